"""Overheads: per-report cost of the trainable, evaluation cost, and Optuna's suggestion latency.

(a) Reporting + checkpointing, from a real Ray Tune experiment on a private local Ray:
`--trials` identical trials of tuner/trainable.py's `train_trial` (DCGAN, bce, Fashion-MNIST,
one report with a checkpoint per epoch, as `tuner/run.py` runs them: 1 CPU per trial and
torch threads = floor(CPUs) by default, `--gpus-per-trial` as run.py chooses it). Per report:

    overhead = time_this_iter_s (Ray) - train_seconds - eval_seconds (the trainable's)

split into `in_trainable` = report_seconds - train - eval (trainer state to torch.save, the
sample grid PNG) and `report_call` = time_this_iter_s - report_seconds (inside tune.report
until the result is queued: the checkpoint copied into the trial's storage). Ray's
time_this_iter_s stops when the result is queued, but tune.report keeps blocking until the
driver has processed the result and asks for the next one; the trial wraps tune.report to time
the whole call (`blocked`), attached to its next report, so `driver_wait` = blocked - report_call
is the part Ray's clock does not see. Fractions are of the epoch's training time
(train_seconds). The first report of each trial also pays the trial's set-up and is left out of
the medians (reported apart). With --limit below the 60,000 training images, the fractions of
a full epoch are also given, with the full epoch's training time extrapolated (labelled).

(b) Evaluation (FID + KID + collapse check on --eval-samples generated images) as a fraction of
the epoch: eval_seconds / train_seconds of the same reports.

(c) Optuna's suggestion latency with the project's GAN space, at `--finished` finished trials:
bench/suggestion_latency.py says how.

Commands:
    # final measurement, CPU (4 full-size epochs; about 10 minutes with 1 CPU per trial)
    python bench/overheads.py
    # GPU machine (same script)
    python bench/overheads.py --gpus-per-trial 1
    # quick check that it works (about 1-2 minutes)
    python bench/overheads.py --trials 1 --epochs 3 --limit 2000 --width 16 --eval-samples 500 \\
        --out /tmp/overheads_check.json
    # only the Optuna part
    python bench/overheads.py --parts optuna

Writes bench/results/overheads_<cpu|gpu>.json (and, with part (c), a PNG of the suggestion latency
against the number of finished trials) and prints a one-line summary. Numbers
mean something only on an otherwise idle machine; the JSON records the load average. Nothing is
asserted.
"""

import math
import time
from pathlib import Path

import harness  # bench/harness.py, beside this script
import suggestion_latency  # bench/suggestion_latency.py: part (c)

FULL_EPOCH_IMAGES = 60000  # Fashion-MNIST's training split


def timed_reports(trial):
    """`trial` timing each tune.report call from inside the trial: the blocking time of report k is
    attached to report k+1 (`bench_prev_report_block_s`), with the torch threads the trial used."""
    def timed(config: dict, *, datasets: dict, settings) -> None:
        import ray.tune
        import torch

        original, previous = ray.tune.report, {}

        def timed_report(metrics, *args, **kwargs):
            metrics = {**metrics, "bench_torch_threads": torch.get_num_threads(), **previous}
            started = time.perf_counter()
            original(metrics, *args, **kwargs)
            previous["bench_prev_report_block_s"] = time.perf_counter() - started

        ray.tune.report = timed_report
        try:
            trial(config, datasets=datasets, settings=settings)
        finally:
            ray.tune.report = original
    return timed


# ---------------------------------------------------------------- (a) + (b): a real experiment

RAW_COLUMNS = ("trial_id", "epoch", "train_seconds", "eval_seconds", "report_seconds", "time_this_iter_s",
               "bench_prev_report_block_s")


def report_costs(records: list[dict]) -> list[dict]:
    """One trial's reports (in order) as the costs of each report; see the module docstring."""
    entries = []
    for k, row in enumerate(records):
        train, evals, iter_s = row["train_seconds"], row["eval_seconds"], row["time_this_iter_s"]
        entry = {
            "train_s": train, "eval_s": evals, "iteration_s": iter_s,
            "overhead_s": iter_s - train - evals,
            "in_trainable_s": row["report_seconds"] - train - evals,
            "report_call_s": iter_s - row["report_seconds"],
            "eval_fraction": evals / train,
        }
        following = records[k + 1] if k + 1 < len(records) else None
        blocked = following.get("bench_prev_report_block_s") if following else None
        if blocked is not None and not math.isnan(blocked):
            entry["blocked_s"] = blocked
            entry["driver_wait_s"] = blocked - entry["report_call_s"]
            entry["full_overhead_s"] = entry["in_trainable_s"] + blocked
        entry["overhead_fraction"] = entry["overhead_s"] / train
        if "full_overhead_s" in entry:
            entry["full_overhead_fraction"] = entry["full_overhead_s"] / train
        entries.append(entry)
    return entries


def experiment_overheads(args) -> dict:
    from tuner.build import load_datasets, trial_resources

    threads = harness.torch_threads(args)
    with harness.local_ray(args.num_cpus, args.num_gpus), \
            harness.experiment_storage(args.storage_path, "gantune-overheads-") as storage:
        spec = harness.identical_trials(args, name="overheads", storage=storage, trials=args.trials,
                                        steps_per_report=args.steps_per_report, max_concurrent=1,
                                        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial)
        gpus = trial_resources(spec)["gpu"]
        datasets = load_datasets(spec)
        images = len(datasets["fashion_mnist"][0])
        print(f"[experiment] {args.trials} trial(s) x {args.epochs} epochs of {images} images, "
              f"{args.cpus_per_trial:g} CPU / {gpus:g} GPU / {threads} torch thread(s)", flush=True)
        run = harness.run_spec(spec, datasets, timed_reports(harness.pinned_trial(threads)))
    frames = [f for _, f in run.reports[run.reports["status"] != "ERROR"].groupby("trial_id", sort=False)]
    raw = [{key: row.get(key) for key in RAW_COLUMNS} for frame in frames for row in frame.to_dict("records")]

    rows, first = [], []
    for frame in frames:
        costs = report_costs(frame.to_dict("records"))
        first.append(costs[0])
        rows.extend(costs[1:])
    if not rows:
        raise SystemExit("no report after the first one: use --epochs 2 or more (or --steps-per-report)")

    def col(key, source=rows):
        return [r[key] for r in source if key in r]

    scale = FULL_EPOCH_IMAGES / images
    per_report = {key: harness.distribution(col(key))
                  for key in ("train_s", "eval_s", "iteration_s", "overhead_s", "in_trainable_s", "report_call_s",
                              "blocked_s", "driver_wait_s", "full_overhead_s", "overhead_fraction",
                              "full_overhead_fraction", "eval_fraction")}
    train_median = per_report["train_s"]["median"]
    result = {
        "spec": spec.to_dict(), "trials": args.trials, "trials_errored": run.trials_errored, "epochs": args.epochs,
        "training_images": images,
        "steps_per_report": args.steps_per_report, "eval_samples": args.eval_samples, "width": args.width,
        "batch_size": args.batch_size, "cpus_per_trial": args.cpus_per_trial, "gpus_per_trial": gpus,
        "torch_threads_per_trial": threads, "trial_device": sorted({d for f in frames for d in f["device"]}),
        "torch_threads_seen_in_trial": sorted({int(t) for f in frames for t in f["bench_torch_threads"]}),
        "reports_in_medians": len(rows),
        "raw_reports": raw,  # every report's own timings, from which the figures below follow
        "per_report": per_report,
        "first_report": {key: harness.distribution(col(key, first))
                         for key in ("iteration_s", "overhead_s", "train_s")},
        "report_overhead_fraction_of_epoch": per_report["overhead_fraction"]["median"],
        "report_overhead_fraction_incl_driver_wait": (per_report["full_overhead_fraction"] or {}).get("median"),
        "eval_fraction_of_epoch": per_report["eval_fraction"]["median"],
        "definitions": {
            "overhead_s": "time_this_iter_s - train_seconds - eval_seconds (Ray's clock)",
            "in_trainable_s": "report_seconds - train_seconds - eval_seconds: torch.save of the trainer state, "
                              "the sample grid PNG",
            "report_call_s": "time_this_iter_s - report_seconds: tune.report until the result is queued "
                             "(checkpoint persisted into the trial directory)",
            "blocked_s": "whole tune.report call, timed in the trial: report_call + waiting for the driver",
            "driver_wait_s": "blocked_s - report_call_s: not counted in time_this_iter_s",
            "full_overhead_s": "in_trainable_s + blocked_s: the trial's wall-clock cost of one report",
            "fractions": "of the epoch's (or report interval's) train_seconds; medians over reports 2..N",
        },
    }
    if scale > 1 and not args.steps_per_report:
        full_train = train_median * scale
        result["full_epoch_extrapolated"] = {
            "train_seconds": round(full_train, 3),
            "method": f"median train_seconds x {FULL_EPOCH_IMAGES}/{images} images",
            "report_overhead_fraction": round(per_report["overhead_s"]["median"] / full_train, 6),
            "report_overhead_fraction_incl_driver_wait":
                (round(per_report["full_overhead_s"]["median"] / full_train, 6)
                 if per_report["full_overhead_s"] else None),
            "eval_fraction": round(per_report["eval_s"]["median"] / full_train, 6),
        }
    return result


def parse_args(argv=None):
    p = harness.parser(__doc__)
    harness.add_trial_flags(p)
    p.add_argument("--parts", nargs="+", choices=("experiment", "optuna"), default=["experiment", "optuna"],
                   help="what to measure: the Ray experiment (a, b) and/or the Optuna latency (c) (default: both)")
    p.add_argument("--trials", type=int, default=1, help="identical trials, one after another (default: 1)")
    p.add_argument("--epochs", type=int, default=4, help="epochs per trial; the first report is left out (default: 4)")
    p.add_argument("--limit", type=int, default=0,
                   help=f"training images (fixed random subset); 0 = all {FULL_EPOCH_IMAGES} (default)")
    p.add_argument("--steps-per-report", type=int, default=0,
                   help="report/checkpoint every N training steps instead of every epoch (default: 0, per epoch)")
    p.add_argument("--gpus-per-trial", type=float,
                   help="GPU share per trial (default: 0.25 if Ray sees a GPU, else 0, as tuner/run.py)")
    suggestion_latency.add_flags(p)
    p.add_argument("--out", type=Path, help="JSON file (default: bench/results/overheads_<cpu|gpu>.json)")
    args = p.parse_args(argv)
    for name in ("trials", "epochs", "eval_samples", "width", "batch_size", "finished", "asks", "report_epochs"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if args.limit < 0 or args.steps_per_report < 0 or args.torch_threads < 0 or args.cpus_per_trial <= 0:
        p.error("--limit, --steps-per-report and --torch-threads must be >= 0, --cpus-per-trial > 0")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    report = harness.Report(args)
    if "experiment" in args.parts:
        report["experiment"] = experiment_overheads(args)
    if "optuna" in args.parts:
        report["optuna"] = suggestion_latency.measure(args)
    device = "gpu" if report.get("experiment", {}).get("gpus_per_trial") else "cpu"
    out = args.out or harness.RESULTS / f"overheads_{device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if "optuna" in report:
        report["plot"] = suggestion_latency.plot(report["optuna"], out.with_suffix(".png"))
    report.write(out)

    parts = []
    if "experiment" in report:
        e = report["experiment"]
        full = e["report_overhead_fraction_incl_driver_wait"]
        parts.append(f"per-report overhead {e['per_report']['overhead_s']['median']:.3f} s = "
                     f"{e['report_overhead_fraction_of_epoch']:.1%} of epoch training"
                     + (f" ({full:.1%} incl. driver wait)" if full is not None else "")
                     + f"; evaluation {e['eval_fraction_of_epoch']:.1%} of epoch"
                     + f" ({e['training_images']} images, {e['reports_in_medians']} reports)")
    if "optuna" in report:
        parts.append(suggestion_latency.summary(report["optuna"]))
    print("overheads: " + "; ".join(parts) + f" -> {out}")
    return report


if __name__ == "__main__":
    main()
