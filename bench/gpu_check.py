"""The CUDA path in one command: what the CPU-only test suite cannot check (issue 17, item 4).

    python bench/gpu_check.py --data-dir /path/to/datasets      # about 5 minutes on one H200 (below)
    python bench/gpu_check.py --dry-run                          # the steps it would run, on any machine
    python bench/gpu_check.py --verdicts-only                    # gpu_check_gpu.json from the steps' JSON

On one CUDA GPU it runs, each through the benchmark's own main(argv):
1. fractional: 4 identical trials at --gpus-per-trial 0.25 on a local Ray with one GPU
   (bench/concurrency.py's arm); passes when all 4 ran at once and every trial trained on cuda
   (the trainable reports its device; tests/test_trainable.py checks the same with a logical GPU,
   where the device is cpu).
2. throughput: bench/throughput.py --device cuda (target: device-resident batches >= 3x the
   seed-style DataLoader loop).
3. concurrency: bench/concurrency.py --gpus-per-trial 1 0.5 0.25, 4 trials an arm.
Each writes its JSON under bench/results/ with the suffix _gpu; this script adds
gpu_check_gpu.json with the verdicts and exits 1 when a check failed. Without CUDA it exits 2
with one line: nothing here can be faked on a CPU. Timed on one H200 with 16 cores (2026-12-04):
fractional 29 s, throughput 96 s, concurrency 94 s at 1 GPU and 24 s at 0.25 with 4 trials an
arm (the 0.5 arm was timed with 8 trials: 90.5 s), so about 5 minutes in all.
"""

import json
import sys
from pathlib import Path

import harness  # bench/harness.py, beside this script

FRACTIONAL_TRIALS = 4
FRACTIONAL_SHARE = 0.25


def steps(data_dir: str | None, results: Path) -> list[tuple[str, str, list[str]]]:
    """(name, bench module, argv) of every step, sized to fit about 5 minutes on one H200."""
    data = ["--data-dir", data_dir] if data_dir else []
    return [
        ("fractional", "concurrency", [*data, "--gpus-per-trial", str(FRACTIONAL_SHARE), "--trials",
                                       str(FRACTIONAL_TRIALS), "--limit", "10000", "--epochs", "2",
                                       "--out", str(results / "fractional_gpu.json")]),
        ("throughput", "throughput", [*data, "--device", "cuda", "--rounds", "9",
                                      "--out", str(results / "throughput_gpu.json")]),
        ("concurrency", "concurrency", [*data, "--gpus-per-trial", "1", "0.5", "0.25", "--trials", "4",
                                        "--limit", "20000", "--out", str(results / "concurrency_gpu.json")]),
    ]


def fractional_verdict(report: dict) -> dict:
    """Did the 0.25-GPU trials share the one GPU, all at once, each on cuda?"""
    arm = report["arms"][0]
    devices = [trial["device"] for trial in arm["per_trial"]]
    return {"passed": (arm["trials_finished"] == FRACTIONAL_TRIALS and all(d.startswith("cuda") for d in devices)
                       and arm["observed_peak_concurrency"] == FRACTIONAL_TRIALS
                       and len({trial["pid"] for trial in arm["per_trial"]}) == FRACTIONAL_TRIALS),
            "trials_finished": arm["trials_finished"], "observed_peak_concurrency": arm["observed_peak_concurrency"],
            "devices": devices, "pids": [trial["pid"] for trial in arm["per_trial"]]}


def throughput_verdict(report: dict) -> dict:
    results = report["results"]
    return {"passed": all(r["meets_target"] for r in results.values()),
            "ratios": {arch: r["ratio"] for arch, r in results.items()},
            "target": {arch: r["target_ratio"] for arch, r in results.items()}}


def step_out(step_argv: list[str]) -> Path:
    """The JSON file a step writes (its --out)."""
    return Path(step_argv[step_argv.index("--out") + 1])


def verdicts(plan: list[tuple[str, str, list[str]]]) -> dict:
    """Each step's verdict, read from the JSON it wrote; the device is the one the first step ran on."""
    found = {}
    for name, _, step_argv in plan:
        written = json.loads(step_out(step_argv).read_text())
        found.setdefault("device", written["machine"]["gpus"][0] if written["machine"]["gpus"] else "no GPU")
        if name == "fractional":
            found[name] = fractional_verdict(written)
        elif name == "throughput":
            found[name] = throughput_verdict(written)
        else:
            found[name] = {arm["label"]: arm["aggregate_images_per_s"] for arm in written["arms"]}
    return found


def main(argv=None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("--dry-run", action="store_true", help="print the steps and their arguments; run nothing")
    p.add_argument("--verdicts-only", action="store_true",
                   help="run nothing: write gpu_check_gpu.json from the steps' JSON already in --results "
                        "(after a step was rerun by hand)")
    p.add_argument("--results", type=Path, default=harness.RESULTS, help="folder for the JSON (default: bench/results)")
    args = p.parse_args(argv)
    plan = steps(args.data_dir, args.results)
    if args.dry_run:
        for name, module, step_argv in plan:
            print(f"{name}: python bench/{module}.py {' '.join(step_argv)}")
        return 0
    if args.verdicts_only:
        return write_verdicts(plan, args.results)
    import torch
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False); run it on a machine "
              "with an NVIDIA GPU", file=sys.stderr)
        return 2

    import concurrency
    import throughput
    modules = {"concurrency": concurrency, "throughput": throughput}
    for name, module, step_argv in plan:
        print(f"== {name}: python bench/{module}.py {' '.join(step_argv)}", flush=True)
        modules[module].main(step_argv)
    return write_verdicts(plan, args.results)


def write_verdicts(plan, results: Path) -> int:
    """gpu_check_gpu.json from the steps' JSON; 1 when a check failed."""
    missing = [step_out(step_argv) for _, _, step_argv in plan if not step_out(step_argv).exists()]
    if missing:
        print(f"gpu_check: {missing[0]} is missing; run its step first", file=sys.stderr)
        return 2
    found = verdicts(plan)
    out = results / "gpu_check_gpu.json"
    out.write_text(json.dumps(found, indent=2) + "\n")
    failed = [name for name, verdict in found.items() if isinstance(verdict, dict) and verdict.get("passed") is False]
    print(f"gpu_check on {found['device']}: " + ("all checks passed" if not failed else f"FAILED: {', '.join(failed)}")
          + f" -> {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
