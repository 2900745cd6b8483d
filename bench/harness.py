"""What the bench/ scripts share, so that each one holds only what it measures.

    parser(doc)                      the command line, with --data-dir
    add_trial_flags(parser)          the flags of identical trials on a private Ray (overheads, concurrency)
    identical_trials(args, ...)      the SearchSpec of N copies of one DCGAN trial, each run to the end
    pinned_trial(threads)            train_trial with an explicit torch thread count
    local_ray(num_cpus, num_gpus)    a private local Ray, shut down afterwards
    run_spec(spec, datasets, ...)    build_tuner + fit; the reports in completion order
    healthy(reports)                 the reports the collapse detector did not flag: every "best" counts only these
    Report(settings) ... .write(out) the JSON: machine, settings, load average before/after, seconds
    figure(path), plot_best_so_far   PNGs beside the JSON

Scripts import it as `harness`: a script's own folder is first on sys.path when it runs.
"""

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from machine import machine_info  # bench/machine.py, beside this file
from tuner.objective import COLLAPSE_PENALTY
from tuner.spec import SearchSpec

RESULTS = Path(__file__).resolve().parent / "results"
IDENTICAL_TRIAL = "DCGAN, bce, z_dim 64, Adam 2e-4 (0.5, 0.999), seed fixed: identical trials"
REPORT_COLUMNS = ["trial_id", "epoch", "fid", "objective", "health"]  # what a report row keeps in the JSON


# ---------------------------------------------------------------- the command line

def parser(doc: str) -> argparse.ArgumentParser:
    """A benchmark's parser: its docstring as --help, and --data-dir, which every benchmark reads."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="folder with FashionMNIST/ in torchvision's layout "
                                      "(default: $GANTUNE_DATA_DIR, else ~/.cache/gantune/datasets)")
    return p


def add_trial_flags(p: argparse.ArgumentParser) -> None:
    """The flags of `identical_trials` and `local_ray`; the script adds --trials, --epochs, --limit
    and --gpus-per-trial, whose defaults are its own."""
    p.add_argument("--eval-samples", type=int, default=2000, help="generated images per evaluation (default: 2000)")
    p.add_argument("--width", type=int, default=64, help="DCGAN width (default: 64, the DCGAN default)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    p.add_argument("--cpus-per-trial", type=float, default=1, help="Ray CPUs per trial (default: 1, as tuner/run.py)")
    p.add_argument("--torch-threads", type=int, default=0,
                   help="torch intra-op threads per trial; 0 = floor(cpus per trial), as Ray sets OMP_NUM_THREADS")
    p.add_argument("--num-cpus", type=int, help="CPUs the local Ray may use (default: all of this machine's)")
    p.add_argument("--num-gpus", type=float,
                   help="GPUs the local Ray may use (default: all visible). On a machine without CUDA, --num-gpus 1 "
                        "makes a logical GPU: GPU scheduling runs with trials on the CPU (tests the script only)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset and of every trial (default: 0)")
    p.add_argument("--storage-path", help="where Ray writes the trials (default: a temporary folder, deleted)")


def torch_threads(args) -> int:
    """--torch-threads, or what Ray gives a trial of --cpus-per-trial CPUs (OMP_NUM_THREADS)."""
    return args.torch_threads or max(1, math.floor(args.cpus_per_trial))


# ---------------------------------------------------------------- identical trials on a private Ray

def identical_trials(args, *, name: str, storage: str, trials: int, **settings) -> SearchSpec:
    """`trials` copies of one DCGAN trial (IDENTICAL_TRIAL at --width and --batch-size), each run to
    the end on the same data: the work is the same in every trial, only its scheduling differs.
    `settings` are further SearchSpec fields (resources, concurrency, steps per report)."""
    config = {"loss": "bce", "arch": "dcgan", "width": args.width, "z_dim": 64, "batch_size": args.batch_size}
    return SearchSpec(name=name, storage_path=storage, space="configs", trial_configs=[config] * trials,
                      epochs=args.epochs, seed=args.seed, limit=args.limit or None, data_dir=args.data_dir,
                      eval_samples=args.eval_samples, early_stop=False, max_failures=0, **settings)


def pinned_trial(threads: int, trial=None):
    """`trial` (default tuner.trainable.train_trial) with torch's thread count set first: a bench
    measures at a thread count it chose, not at whatever the worker inherited. A closure with its
    imports inside, so Ray ships it by value (workers cannot import this folder's modules)."""
    def pinned(config: dict, *, datasets: dict, settings) -> None:
        import torch
        from tuner.trainable import train_trial
        torch.set_num_threads(threads)
        (trial or train_trial)(config, datasets=datasets, settings=settings)
    return pinned


@contextmanager
def local_ray(num_cpus: int | None = None, num_gpus: float | None = None):
    """A Ray of our own on this machine (never a running cluster's), yielding its resources."""
    import ray
    ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.cluster_resources()
    finally:
        ray.shutdown()


@contextmanager
def experiment_storage(path: str | None, prefix: str):
    """`path`, or a temporary folder deleted afterwards."""
    if path:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield tmp


class Run(NamedTuple):
    reports: pd.DataFrame  # one row per report, in completion order
    trials_errored: int
    fit_seconds: float  # Tuner.fit() wall clock


def run_spec(spec: SearchSpec, datasets: dict | None = None, trainable=None, config_columns=(),
             resume: bool = False) -> Run:
    """Runs `spec` on the connected Ray through tuner.build.build_tuner, then reads back every report;
    with `resume`, finishes the experiment of that name already in the spec's storage."""
    from tuner.build import build_tuner
    tuner = build_tuner(spec.resumed() if resume else spec, datasets, trainable, resume=resume)
    started = time.perf_counter()
    tuner.fit()
    fit_seconds = time.perf_counter() - started
    reports, trials = completed_reports(spec.experiment_path, config_columns)
    return Run(reports, int((trials["status"] == "ERROR").sum()), fit_seconds)


def completed_reports(experiment_path, config_columns=()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reports, trials) of an experiment directory: every report in completion order with its
    trial's status, end-of-trial health and `config_columns` (those the trials have), and
    `seconds_since_start` from the first trial's start; and tuner.analysis's trials frame."""
    from tuner.analysis import load_history, load_trials
    history, trials = load_history(experiment_path), load_trials(experiment_path)
    columns = ["trial_id", "status", "health", *[c for c in config_columns if c in trials]]
    history = history.merge(trials[columns], on="trial_id", how="left")
    started = (history["timestamp"] - history["time_total_s"]).min()
    history["seconds_since_start"] = history["timestamp"] - started
    return history.sort_values(["timestamp", "time_total_s"], kind="stable").reset_index(drop=True), trials


def healthy(reports: pd.DataFrame) -> pd.DataFrame:
    """The reports whose verdict was neither collapsed nor diverged: their objective is their FID,
    with no penalty. A benchmark's "best" is the best of these, never a flagged report's FID."""
    return reports[reports["objective"] < reports["fid"] + COLLAPSE_PENALTY / 2]


def report_records(reports: pd.DataFrame, config_columns=()) -> list[dict]:
    """Reports for the JSON: what each trial trained and what it scored, rounded to 6 decimals."""
    columns = [*REPORT_COLUMNS, *[c for c in config_columns if c in reports], "seconds_since_start"]
    return json.loads(reports[columns].round(6).to_json(orient="records"))


# ---------------------------------------------------------------- the JSON and the plots

def distribution(values: list) -> dict | None:
    """Median, 90th percentile (nearest rank), min, max and count, rounded to 6 decimals."""
    if not values:
        return None
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
    return {"median": round(statistics.median(ordered), 6), "p90": round(p90, 6), "min": round(ordered[0], 6),
            "max": round(ordered[-1], 6), "n": len(ordered)}


class Report(dict):
    """A bench JSON being filled. Starts with the machine and the load average; `write` adds the
    load average after, the seconds since the start and writes it. Numbers mean something only on
    an otherwise idle machine, which the load average tells."""

    def __init__(self, settings=None):
        if isinstance(settings, argparse.Namespace):
            settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(settings).items()}
        super().__init__(machine=machine_info(), settings=settings or {})
        self.started, self.load_before = time.time(), os.getloadavg()

    def write(self, out: Path) -> Path:
        self["load_average_1_5_15"] = {"before": self.load_before, "after": os.getloadavg()}
        self["seconds"] = round(time.time() - self.started, 1)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self, indent=2) + "\n")
        return out


@contextmanager
def figure(path: Path, ncols: int = 1, figsize=(7, 4)):
    """Yields the axes of a new figure (one, or a list of `ncols`), saved to `path` when the block ends."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, ncols, figsize=figsize)
    try:
        yield axes
        fig.savefig(path, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)


def plot_best_so_far(curves: dict, path: Path, title: str, marker: tuple[float, str], ylabel="best FID so far") -> None:
    """Best FID so far against trial-epochs spent, one step line per (arm, seed) -> reports in
    completion order; arm "A" blue, the others orange, the seed picks the line style. `marker` is
    (trial-epochs, label) of a vertical reference line."""
    with figure(path) as ax:
        ax.axvline(marker[0], color="grey", linestyle=":", label=marker[1])
        for (arm, seed), reports in curves.items():
            ax.step(np.arange(1, len(reports) + 1), reports["fid"].cummin(), where="post",
                    color="C0" if arm == "A" else "C1", linestyle=["-", "--", "-."][int(seed) % 3], alpha=0.8,
                    label=f"{arm} seed {seed}")
        ax.set(xlabel="trial-epochs spent", ylabel=ylabel, yscale="log", title=title)
        ax.legend(fontsize=7, ncol=2)
