"""bench/gpu_check.py where there is no CUDA: one line and exit 2, and the steps it would run on a GPU
(--dry-run). The CUDA steps themselves cannot run here, and nothing fakes a GPU for them."""

import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO

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
