"""Concurrency: aggregate training images/s and trials finished per hour, 1 vs N trials at once.

Each arm is a real Ray Tune experiment on a private local Ray: `--trials` identical trials of
tuner/trainable.py's `train_trial` (DCGAN, bce, Fashion-MNIST subset, fixed seed; the same
dataset/evaluator shipping, evaluation and checkpoint per epoch as `tuner/run.py`; no ASHA, no
stopper, so every trial trains every epoch). Arms differ only in how many trials run at once:

- CPU (default when there is no GPU): `--concurrency 1 2`, each trial 1 CPU (`--cpus-per-trial`)
  and torch intra-op threads = floor(cpus per trial) = 1 (`--torch-threads`), set explicitly in
  the trial. That is also what Ray does by itself (it sets OMP_NUM_THREADS to the trial's CPUs),
  and it keeps 2 trials from fighting over 2 cores. `--one-trial-all-cpus` adds the alternative
  use of the same cores: one trial at a time given every CPU (and as many threads).
- GPU (`--gpus-per-trial 1 0.5 0.25`, the default when a GPU is visible): trials share the GPUs
  as Ray's fractional resources allow (1 -> 1 trial per GPU, 0.25 -> 4), 1 CPU and 1 thread each.

Measured from Ray's results, nothing estimated: images trained = sum over a trial's reports of
images_per_s * train_seconds (= D steps * batch size); aggregate images/s = sum over trials of
images trained / wall time of the whole experiment (Tuner.fit(), so trial start-up, evaluation
and checkpointing count against it); trials per hour = trials that finished without error / wall
time * 3600. Per-trial training speed (images / train_seconds) shows how much each trial slows
down when it shares the machine. Observed peak concurrency comes from the result timestamps
(1 s resolution). Numbers mean something only on an otherwise idle machine; the JSON records
the load average before and after. Nothing is asserted.

Commands:
    # final measurement, CPU (about 10 minutes on 2 cores)
    python bench/concurrency.py --one-trial-all-cpus
    # final measurement, GPU machine (the same script, unchanged)
    python bench/concurrency.py --gpus-per-trial 1 0.5 0.25
    # quick check that it works (about 2 minutes on 2 busy cores)
    python bench/concurrency.py --trials 2 --limit 1000 --epochs 1 --width 16 --eval-samples 500 \\
        --out /tmp/concurrency_check.json

Writes bench/results/concurrency_<cpu|gpu>.json and a PNG beside it (when matplotlib is
installed), and prints a one-line summary.
"""

import sys
from pathlib import Path

import torch

import harness  # bench/harness.py, beside this script
from tuner.spec import SearchSpec

AUTO = {"cpu": dict(trials=4, limit=10000), "gpu": dict(trials=8, limit=60000)}


def gpu_note(mode: str) -> str:
    if mode == "cpu":
        return "pending: run with --gpus-per-trial 1 0.5 0.25 on a GPU machine"
    return "measured" if torch.cuda.is_available() else "logical GPU, trials ran on the CPU: not a GPU measurement"


def peak_overlap(intervals: list) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda t: (t[0], t[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def run_arm(label: str, args, datasets: dict, storage: str, *, max_concurrent, cpus: float, gpus: float,
            threads: int) -> dict:
    spec = harness.identical_trials(args, name=label, storage=storage, trials=args.trials, cpus_per_trial=cpus,
                                    gpus_per_trial=gpus,
                                    max_concurrent=max_concurrent or args.trials)  # a cap starts the trials together
    print(f"[{label}] {args.trials} trials, at most {max_concurrent or 'as resources allow'} at once, "
          f"{cpus:g} CPU / {gpus:g} GPU / {threads} torch thread(s) each", flush=True)
    run = harness.run_spec(spec, datasets, harness.pinned_trial(threads))
    wall = run.fit_seconds

    trials, intervals = [], []
    for _, rows in run.reports[run.reports["status"] != "ERROR"].groupby("trial_id", sort=False):
        images = float((rows["images_per_s"] * rows["train_seconds"]).sum())
        train_s, eval_s = float(rows["train_seconds"].sum()), float(rows["eval_seconds"].sum())
        start = float(rows["timestamp"].iloc[0] - rows["time_this_iter_s"].iloc[0])
        intervals.append((start, float(rows["timestamp"].iloc[-1])))
        trials.append({"images": round(images), "train_seconds": round(train_s, 3), "eval_seconds": round(eval_s, 3),
                       "time_total_s": round(float(rows["time_total_s"].iloc[-1]), 3),
                       "training_images_per_s": round(images / train_s, 1), "reports": len(rows),
                       "device": rows["device"].iloc[-1], "pid": int(rows["pid"].iloc[-1])})
    images = sum(t["images"] for t in trials)
    return {
        "label": label, "spec": spec.to_dict(), "trials": args.trials, "trials_finished": len(trials),
        "trials_errored": run.trials_errored,
        "max_concurrent_trials": max_concurrent, "cpus_per_trial": cpus, "gpus_per_trial": gpus,
        "torch_threads_per_trial": threads, "wall_seconds": round(wall, 2), "images_trained": images,
        "aggregate_images_per_s": round(images / wall, 1),
        "trials_per_hour": round(len(trials) / wall * 3600, 1),
        "mean_training_images_per_s_per_trial": round(sum(t["training_images_per_s"] for t in trials)
                                                      / max(len(trials), 1), 1),
        "train_seconds_share_of_trial_time": round(sum(t["train_seconds"] for t in trials)
                                                   / max(sum(t["time_total_s"] for t in trials), 1e-9), 3),
        "observed_peak_concurrency": peak_overlap(intervals), "per_trial": trials,
    }


def plot(report: dict, path) -> str:
    arms, settings = report["arms"], report["settings"]
    labels = [a["label"] for a in arms]
    with harness.figure(path, ncols=2, figsize=(9, 3.5)) as axes:
        for ax, key, title in ((axes[0], "aggregate_images_per_s", "aggregate training images/s"),
                               (axes[1], "trials_per_hour", "trials finished per hour")):
            ax.bar(labels, [a[key] for a in arms], color="tab:blue")
            ax.set_title(title)
            ax.tick_params(axis="x", rotation=20)
        axes[0].figure.suptitle(f"{settings['trials']} identical DCGAN trials, {settings['limit']} images x "
                                f"{settings['epochs']} epochs ({settings['mode']})", fontsize=9)
    return str(path)


def parse_args(argv=None):
    p = harness.parser(__doc__)
    harness.add_trial_flags(p)
    p.add_argument("--gpus-per-trial", type=float, nargs="+",
                   help="GPU arms: one experiment per GPU share, e.g. 1 0.5 0.25 (default: those three when a GPU "
                        "is visible, else CPU arms)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 2],
                   help="CPU arms: trials running at once, one experiment each (default: 1 2)")
    p.add_argument("--one-trial-all-cpus", action="store_true",
                   help="CPU: also run one trial at a time with every Ray CPU and as many torch threads")
    p.add_argument("--trials", type=int, default=0,
                   help=f"identical trials per arm; 0 = {AUTO['cpu']['trials']} on CPU, {AUTO['gpu']['trials']} on GPU")
    p.add_argument("--limit", type=int, default=0,
                   help=f"training images (fixed random subset); 0 = {AUTO['cpu']['limit']} on CPU, "
                        f"{AUTO['gpu']['limit']} (all) on GPU")
    p.add_argument("--epochs", type=int, default=2, help="epochs per trial, one report + checkpoint each (default: 2)")
    p.add_argument("--out", type=Path, help="JSON file (default: bench/results/concurrency_<cpu|gpu>.json)")
    args = p.parse_args(argv)
    for name in ("trials", "limit", "torch_threads"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0")
    if args.epochs < 1 or args.eval_samples < 1 or args.cpus_per_trial <= 0 or min(args.concurrency) < 1:
        p.error("--epochs, --eval-samples, --cpus-per-trial and --concurrency must be positive")
    if args.gpus_per_trial and any(not 0 < g <= 1 for g in args.gpus_per_trial):
        p.error("--gpus-per-trial: shares must be in (0, 1]")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    from tuner.build import load_datasets

    with harness.local_ray(args.num_cpus, args.num_gpus) as cluster:
        total_cpus, total_gpus = int(cluster.get("CPU", 0)), cluster.get("GPU", 0)
        if args.gpus_per_trial is None and total_gpus:
            args.gpus_per_trial = [1, 0.5, 0.25]
        mode = "gpu" if args.gpus_per_trial else "cpu"
        if mode == "gpu" and not total_gpus:
            sys.exit("--gpus-per-trial: this machine has no GPU Ray can use")
        args.trials = args.trials or AUTO[mode]["trials"]
        args.limit = args.limit or AUTO[mode]["limit"]
        threads = harness.torch_threads(args)

        datasets = load_datasets(SearchSpec(data_dir=args.data_dir, limit=args.limit, seed=args.seed,
                                            eval_samples=args.eval_samples))
        limit = len(datasets["fashion_mnist"][0])
        report = harness.Report()
        with harness.experiment_storage(args.storage_path, "gantune-concurrency-") as storage:
            arms = []
            if mode == "cpu":
                for c in args.concurrency:
                    if c * args.cpus_per_trial > total_cpus:
                        print(f"skipping {c} concurrent: needs {c * args.cpus_per_trial:g} CPUs, Ray has {total_cpus}")
                        continue
                    arms.append(run_arm(f"cpu-{c}x{args.cpus_per_trial:g}cpu", args, datasets, storage,
                                        max_concurrent=c, cpus=args.cpus_per_trial, gpus=0, threads=threads))
                if args.one_trial_all_cpus:
                    arms.append(run_arm(f"cpu-1x{total_cpus}cpu", args, datasets, storage, max_concurrent=1,
                                        cpus=total_cpus, gpus=0, threads=total_cpus))
            else:
                for g in args.gpus_per_trial:
                    arms.append(run_arm(f"gpu-{g:g}", args, datasets, storage, max_concurrent=None,
                                        cpus=args.cpus_per_trial, gpus=g, threads=threads))

    base = arms[0] if arms else None
    for arm in arms:
        arm["aggregate_speedup_vs_first_arm"] = round(arm["aggregate_images_per_s"] / base["aggregate_images_per_s"], 3)
    report.update(
        settings={"mode": mode, "trials": args.trials, "limit": limit, "epochs": args.epochs,
                  "eval_samples": args.eval_samples, "batch_size": args.batch_size, "width": args.width,
                  "config": harness.IDENTICAL_TRIAL, "ray_cpus": total_cpus, "ray_gpus": total_gpus,
                  "torch_threads": "explicit torch.set_num_threads in each trial (see arms)",
                  "aggregate_images_per_s": "sum over trials of images trained / Tuner.fit() wall seconds",
                  "trials_per_hour": "trials finished without error / Tuner.fit() wall seconds * 3600"},
        gpu_figures=gpu_note(mode), arms=arms)
    out = args.out or harness.RESULTS / f"concurrency_{mode}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report["plot"] = plot(report, out.with_suffix(".png"))
    report.write(out)
    summary = "; ".join(f"{a['label']}: {a['aggregate_images_per_s']:.0f} img/s, {a['trials_per_hour']:.0f} trials/h"
                        f" (x{a['aggregate_speedup_vs_first_arm']:.2f}, peak {a['observed_peak_concurrency']} at once)"
                        for a in arms)
    print(f"concurrency ({mode}, {args.trials} trials x {args.epochs} epochs of {limit} images): {summary} -> {out}")
    return report


if __name__ == "__main__":
    main()
