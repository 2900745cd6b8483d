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

(c) Optuna's suggestion latency with the project's GAN space (search_spaces, `--space`, wrapped
like tuner/run.py does): a TPE study (TPESampler(seed), what Ray's OptunaSearch builds) is filled
with `--finished` trials that report `--report-epochs` intermediate values and are told a
synthetic objective (a deterministic function of the config, with collapsed and diverged
trials scored like tuner/objective.py); then `--asks` timed suggestions = study.ask() + the
space function (define-by-run: the suggest_* calls are where TPE samples). Each timed trial is
told FAIL afterwards, so every ask sees exactly `--finished` finished trials. The same through
Ray's OptunaSearch (suggest / on_trial_result / on_trial_complete, as Tune calls them).

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

Writes bench/results/overheads_<cpu|gpu>.json (and a PNG of the suggestion latency against the
number of finished trials, when matplotlib is installed) and prints a one-line summary. Numbers
mean something only on an otherwise idle machine; the JSON records the load average. Nothing is
asserted.
"""

import argparse
import dataclasses
import json
import math
import os
import random
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import torch
from machine import machine_info  # bench/machine.py, beside this script

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
FULL_EPOCH_IMAGES = 60000  # Fashion-MNIST's training split


def overhead_trial(config: dict, *, datasets: dict, settings) -> None:
    """train_trial with explicit torch threads, timing each tune.report call from inside the trial.

    The blocking time of report k is attached to report k+1 (`bench_prev_report_block_s`).
    """
    import ray.tune
    import torch as trial_torch
    from tuner.trainable import train_trial

    config = dict(config)
    trial_torch.set_num_threads(config.pop("torch_threads"))
    original, previous = ray.tune.report, {}

    def timed_report(metrics, *args, **kwargs):
        metrics = {**metrics, "bench_torch_threads": trial_torch.get_num_threads(), **previous}
        started = time.perf_counter()
        original(metrics, *args, **kwargs)
        previous["bench_prev_report_block_s"] = time.perf_counter() - started

    ray.tune.report = timed_report
    try:
        train_trial(config, datasets=datasets, settings=settings)
    finally:
        ray.tune.report = original


def stats(values: list) -> dict | None:
    if not values:
        return None
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
    return {"median": round(statistics.median(ordered), 6), "p90": round(p90, 6), "min": round(ordered[0], 6),
            "max": round(ordered[-1], 6), "n": len(ordered)}


# ---------------------------------------------------------------- (a) + (b): a real experiment

def trial_settings(eval_samples: int, steps_per_report: int, cpus: float, gpus: float):
    from tuner.trainable import TrialSettings
    values = dict(eval_samples=eval_samples, collapse_patience=2, steps_per_report=steps_per_report,
                  cpus_per_trial=cpus, gpus_per_trial=gpus)
    known = {f.name for f in dataclasses.fields(TrialSettings)}
    return TrialSettings(**{k: v for k, v in values.items() if k in known})


def experiment_overheads(args) -> dict:
    import ray
    from ray import tune
    from tuner.run import load_datasets

    ray.init(address="local", num_cpus=args.num_cpus, num_gpus=args.num_gpus, include_dashboard=False,
             log_to_driver=False)
    try:
        cluster_gpus = ray.cluster_resources().get("GPU", 0)
        gpus = args.gpus_per_trial if args.gpus_per_trial is not None else (0.25 if cluster_gpus else 0)
        if gpus > cluster_gpus:
            raise SystemExit(f"--gpus-per-trial: {gpus} requested but Ray sees {cluster_gpus:g} GPU(s)")
        threads = args.torch_threads or max(1, math.floor(args.cpus_per_trial))
        datasets = load_datasets(SimpleNamespace(dataset=["fashion_mnist"], data_dir=args.data_dir,
                                                 limit=args.limit or None, seed=args.seed,
                                                 eval_samples=args.eval_samples))
        images = len(datasets["fashion_mnist"][0])
        config = {"model": "gan", "dataset": "fashion_mnist", "loss": "bce", "arch": "dcgan", "width": args.width,
                  "z_dim": 64, "batch_size": args.batch_size, "epochs": args.epochs, "seed": args.seed,
                  "torch_threads": threads}
        settings = trial_settings(args.eval_samples, args.steps_per_report, args.cpus_per_trial, gpus)
        trainable = tune.with_resources(tune.with_parameters(overhead_trial, datasets=datasets, settings=settings),
                                        {"cpu": args.cpus_per_trial, "gpu": gpus})
        with tempfile.TemporaryDirectory(prefix="gantune-overheads-") as tmp:
            tuner = tune.Tuner(
                trainable, param_space=config,
                tune_config=tune.TuneConfig(num_samples=args.trials, max_concurrent_trials=1),
                run_config=tune.RunConfig(
                    name="overheads", storage_path=args.storage_path or tmp, verbose=0,
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))
            print(f"[experiment] {args.trials} trial(s) x {args.epochs} epochs of {images} images, "
                  f"{args.cpus_per_trial:g} CPU / {gpus:g} GPU / {threads} torch thread(s)", flush=True)
            grid = tuner.fit()
            frames = [r.metrics_dataframe for r in grid if not r.error]
            errors = sum(1 for r in grid if r.error)
    finally:
        ray.shutdown()

    rows, first = [], []
    for frame in frames:
        records = frame.to_dict("records")
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
            (first if k == 0 else rows).append(entry)
    if not rows:
        raise SystemExit("no report after the first one: use --epochs 2 or more (or --steps-per-report)")

    def col(key, source=rows):
        return [r[key] for r in source if key in r]

    scale = FULL_EPOCH_IMAGES / images
    per_report = {key: stats(col(key)) for key in ("train_s", "eval_s", "iteration_s", "overhead_s", "in_trainable_s",
                                                   "report_call_s", "blocked_s", "driver_wait_s", "full_overhead_s",
                                                   "overhead_fraction", "full_overhead_fraction", "eval_fraction")}
    train_median = per_report["train_s"]["median"]
    result = {
        "trials": args.trials, "trials_errored": errors, "epochs": args.epochs, "training_images": images,
        "steps_per_report": args.steps_per_report, "eval_samples": args.eval_samples, "width": args.width,
        "batch_size": args.batch_size, "cpus_per_trial": args.cpus_per_trial, "gpus_per_trial": gpus,
        "torch_threads_per_trial": threads, "trial_device": sorted({d for f in frames for d in f["device"]}),
        "torch_threads_seen_in_trial": sorted({int(t) for f in frames for t in f.get("bench_torch_threads", [])}),
        "reports_in_medians": len(rows),
        "per_report": per_report,
        "first_report": {key: stats(col(key, first)) for key in ("iteration_s", "overhead_s", "train_s")},
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


# ---------------------------------------------------------------- (c): Optuna suggestion latency

def synthetic_objective(config: dict, rng: random.Random) -> float:
    """A made-up but structured FID: good near lr 2e-4, some trials collapse or diverge."""
    from tuner.objective import objective
    lr_g, lr_d = config.get("lr_g", 2e-4), config.get("lr_d", 2e-4)
    fid = 30 + 40 * abs(math.log10(lr_g / 2e-4)) + 25 * abs(math.log10(lr_d / 2e-4)) + rng.gauss(0, 5)
    fid += {"bce": 10, "hinge": 0, "wgan": 25, "wgan-gp": 5}.get(config.get("loss"), 0)
    draw = rng.random()
    return objective(max(fid, 1.0), collapsed=draw < 0.2, diverged=draw > 0.97)


def optuna_latency(args) -> dict:
    import optuna
    from optuna.trial import TrialState

    from search_spaces import SPACES, with_constants
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = partial(with_constants, SPACES[(args.space, "gan")],
                    {"dataset": "fashion_mnist", "epochs": args.report_epochs, "seed": args.seed})

    # Optuna directly
    rng = random.Random(args.seed)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=args.seed))
    fill = []
    for _ in range(args.finished):
        started = time.perf_counter()
        trial = study.ask()
        config = space(trial)
        fill.append(time.perf_counter() - started)
        value = synthetic_objective(config, rng)
        for step in range(1, args.report_epochs + 1):
            trial.report(value * (1 + 0.5 / step), step)
        study.tell(trial, value)
    timed = []
    for _ in range(args.asks):
        started = time.perf_counter()
        trial = study.ask()
        space(trial)
        timed.append(time.perf_counter() - started)
        study.tell(trial, state=TrialState.FAIL)
    complete = sum(t.state == TrialState.COMPLETE for t in study.trials)

    result = {
        "space": args.space, "sampler": "TPESampler(seed) with Optuna's defaults (as Ray's OptunaSearch builds it)",
        "finished_trials": complete, "timed_asks": args.asks, "intermediate_reports_per_trial": args.report_epochs,
        "optuna_ask_plus_space_seconds": stats(timed),
        "optuna_during_fill_seconds": {f"{lo}-{min(lo + 19, args.finished - 1)} finished": stats(fill[lo:lo + 20])
                                       for lo in range(0, args.finished, 20)},
        "fill_curve_seconds": [round(t, 6) for t in fill],
    }

    if not args.no_ray_searcher:
        from ray.tune.search.optuna import OptunaSearch
        rng = random.Random(args.seed)
        searcher = OptunaSearch(space=space, metric="objective", mode="min", seed=args.seed)
        for i in range(args.finished):
            config = searcher.suggest(f"fill{i}")
            value = synthetic_objective(config, rng)
            for step in range(1, args.report_epochs + 1):
                searcher.on_trial_result(f"fill{i}", {"objective": value * (1 + 0.5 / step),
                                                      "training_iteration": step})
            searcher.on_trial_complete(f"fill{i}", {"objective": value})
        ray_timed = []
        for i in range(args.asks):
            started = time.perf_counter()
            searcher.suggest(f"timed{i}")
            ray_timed.append(time.perf_counter() - started)
            searcher.on_trial_complete(f"timed{i}", error=True)  # Optuna FAIL: the study stays at --finished
        result["ray_optunasearch_suggest_seconds"] = stats(ray_timed)
    return result


def plot(report: dict, path: Path) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    curve = report["optuna"]["fill_curve_seconds"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(len(curve)), [t * 1000 for t in curve], ".", ms=3, label="ask + space while filling")
    timed = report["optuna"]["optuna_ask_plus_space_seconds"]
    ax.axhline(timed["median"] * 1000, color="tab:red", lw=1,
               label=f"median of {timed['n']} asks at {report['optuna']['finished_trials']} finished")
    ax.set_xlabel("finished trials in the study")
    ax.set_ylabel("suggestion latency (ms)")
    ax.set_title(f"Optuna TPE, {report['optuna']['space']} GAN space", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", choices=("experiment", "optuna"), default=["experiment", "optuna"],
                   help="what to measure: the Ray experiment (a, b) and/or the Optuna latency (c) (default: both)")
    p.add_argument("--data-dir", help="folder with FashionMNIST/ in torchvision's layout (default: $GANTUNE_DATA_DIR)")
    p.add_argument("--trials", type=int, default=1, help="identical trials, one after another (default: 1)")
    p.add_argument("--epochs", type=int, default=4, help="epochs per trial; the first report is left out (default: 4)")
    p.add_argument("--limit", type=int, default=0,
                   help=f"training images (fixed random subset); 0 = all {FULL_EPOCH_IMAGES} (default)")
    p.add_argument("--steps-per-report", type=int, default=0,
                   help="report/checkpoint every N training steps instead of every epoch (default: 0, per epoch)")
    p.add_argument("--eval-samples", type=int, default=2000, help="generated images per evaluation (default: 2000)")
    p.add_argument("--width", type=int, default=64, help="DCGAN width (default: 64)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    p.add_argument("--cpus-per-trial", type=float, default=1, help="Ray CPUs per trial (default: 1, as tuner/run.py)")
    p.add_argument("--gpus-per-trial", type=float,
                   help="GPU share per trial (default: 0.25 if Ray sees a GPU, else 0, as tuner/run.py)")
    p.add_argument("--torch-threads", type=int, default=0,
                   help="torch intra-op threads in the trial; 0 = floor(cpus per trial), as Ray sets OMP_NUM_THREADS")
    p.add_argument("--num-cpus", type=int, help="CPUs the local Ray may use (default: all of this machine's)")
    p.add_argument("--num-gpus", type=float,
                   help="GPUs the local Ray may use (default: all visible); on a machine without CUDA a logical GPU "
                        "only tests the script (the trial still trains on the CPU)")
    p.add_argument("--storage-path", help="where Ray writes the trial (default: a temporary folder, deleted)")
    p.add_argument("--space", choices=("full", "smoke"), default="full",
                   help="GAN search space for (c) (default: full)")
    p.add_argument("--finished", type=int, default=200,
                   help="finished trials in the study before timing (default: 200)")
    p.add_argument("--asks", type=int, default=20, help="timed suggestions (default: 20)")
    p.add_argument("--report-epochs", type=int, default=10,
                   help="intermediate values each filled trial reports, like a 10-epoch trial (default: 10)")
    p.add_argument("--no-ray-searcher", action="store_true", help="skip timing through Ray's OptunaSearch")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset, the trials and the sampler (default: 0)")
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
    started, load_before = time.time(), os.getloadavg()
    report = {"machine": machine_info()}
    if "experiment" in args.parts:
        report["experiment"] = experiment_overheads(args)
    if "optuna" in args.parts:
        report["optuna"] = optuna_latency(args)
    report["load_average_1_5_15"] = {"before": load_before, "after": os.getloadavg()}
    report["seconds"] = round(time.time() - started, 1)
    device = "gpu" if report.get("experiment", {}).get("gpus_per_trial") else "cpu"
    out = args.out or RESULTS / f"overheads_{device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if "optuna" in report:
        report["plot"] = plot(report, out.with_suffix(".png"))
    out.write_text(json.dumps(report, indent=2) + "\n")

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
        o = report["optuna"]
        line = (f"Optuna TPE suggestion at {o['finished_trials']} finished: median "
                f"{o['optuna_ask_plus_space_seconds']['median'] * 1000:.1f} ms, p90 "
                f"{o['optuna_ask_plus_space_seconds']['p90'] * 1000:.1f} ms")
        if "ray_optunasearch_suggest_seconds" in o:
            r = o["ray_optunasearch_suggest_seconds"]
            line += f" (Ray OptunaSearch: {r['median'] * 1000:.1f} / {r['p90'] * 1000:.1f} ms)"
        parts.append(line)
    print("overheads: " + "; ".join(parts) + f" -> {out}")
    return report


if __name__ == "__main__":
    main()
