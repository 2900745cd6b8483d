"""bench/gpu_check.py where there is no CUDA: one line and exit 2, and the steps it would run on a GPU
(--dry-run). The CUDA steps themselves cannot run here, and nothing fakes a GPU for them; the figures
they gave on a real GPU are stored in bench/results and recomputed here from their raw rows."""

import csv
import json
import subprocess
import sys
from collections import defaultdict

import pytest
import torch

from tests.conftest import REPO
from tests.test_bench import check_concurrency_arm, check_throughput

SCRIPT = str(REPO / "bench" / "gpu_check.py")


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=600, cwd=REPO)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: run bench/gpu_check.py itself")
def test_without_cuda_it_refuses_in_one_line_with_exit_2(tmp_path):
    done = run("--results", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "no CUDA device" in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing written


def test_dry_run_lists_the_three_benchmarks_with_their_gpu_arguments(tmp_path):
    done = run("--dry-run", "--data-dir", "/data", "--results", str(tmp_path))
    assert done.returncode == 0, done.stderr
    steps = dict(line.split(": ", 1) for line in done.stdout.strip().splitlines())
    assert list(steps) == ["fractional", "throughput", "concurrency"]
    assert steps["fractional"].startswith("python bench/concurrency.py --data-dir /data --gpus-per-trial 0.25 "
                                          "--trials 4 ")
    assert steps["throughput"].startswith("python bench/throughput.py --data-dir /data --device cuda ")
    assert " --gpus-per-trial 1 0.5 0.25 " in steps["concurrency"]
    for name, out in (("fractional", "fractional_gpu"), ("throughput", "throughput_gpu"),
                      ("concurrency", "concurrency_gpu")):
        assert steps[name].endswith(f"--out {tmp_path}/{out}.json")


def test_each_step_parses_with_its_benchmark_parser(tmp_path):
    """The composed argv is what each benchmark's own parser accepts (parsed, not run)."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import concurrency
        import gpu_check
        for name, module, argv in gpu_check.steps("/data", tmp_path):
            if module == "concurrency":
                args = concurrency.parse_args(argv)
                assert args.gpus_per_trial and args.out.parent == tmp_path
    finally:
        sys.path.remove(str(REPO / "bench"))


STORED = REPO / "bench" / "results"


def stored(name: str) -> dict:
    return json.loads((STORED / name).read_text())


def test_stored_gpu_figures_follow_from_their_raw_rows():
    """The README's GPU figures (one H200, 2026-12-04): every arm's totals from its per-trial rows,
    throughput from its rounds, the verdicts by gpu_check's own rules, and the four 0.25-GPU trials
    seen on the GPU at one moment by nvidia-smi (their process ids, sampled every 0.5 s)."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import gpu_check
        found = gpu_check.verdicts(gpu_check.steps(None, STORED))
    finally:
        sys.path.remove(str(REPO / "bench"))
    assert stored("gpu_check_gpu.json") == found
    assert found["device"] == "NVIDIA H200" and found["fractional"]["passed"] and not found["throughput"]["passed"]

    for name in ("fractional_gpu.json", "concurrency_gpu.json"):
        report = stored(name)
        settings = report["settings"]
        assert report["machine"]["cuda_available"] and report["gpu_figures"] == "measured"
        for arm in report["arms"]:
            check_concurrency_arm(arm, settings["trials"], settings["epochs"], settings["limit"])
            assert arm["aggregate_images_per_s"] == pytest.approx(arm["images_trained"] / arm["wall_seconds"], rel=1e-3)
            trials = arm["per_trial"]
            assert {t["device"] for t in trials} == {"cuda"} and len({t["pid"] for t in trials}) == len(trials)
            assert arm["observed_peak_concurrency"] == min(settings["trials"], int(1 / arm["gpus_per_trial"]))
        first = report["arms"][0]["aggregate_images_per_s"]
        for arm in report["arms"]:
            assert arm["aggregate_speedup_vs_first_arm"] == pytest.approx(arm["aggregate_images_per_s"] / first,
                                                                          abs=1e-3)
    throughput = stored("throughput_gpu.json")
    assert throughput["settings"]["device"] == "cuda"
    check_throughput(throughput, throughput["settings"]["rounds"])

    on_gpu = defaultdict(set)
    with open(STORED / "fractional_gpu_nvidia_smi.csv") as rows:
        for row in csv.DictReader(rows, skipinitialspace=True):
            on_gpu[row["timestamp"]].add(int(row["pid"]))
    assert set(found["fractional"]["pids"]) in on_gpu.values()
