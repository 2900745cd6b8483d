"""Search efficiency: the seed grid run exhaustively (A) against TPE + ASHA + the collapse stopper (B).

Both arms train GANs with tuner/trainable.py's `train_trial` on the same fixed Fashion-MNIST
subset (`--limit` images, the same for every seed), for the same `--epochs` per trial, with the
same evaluation (`--eval-samples` generated images, FID/KID/collapse against the same reference):

  A  the seed labs' grid: {bce, hinge} x z_dim {32, 64, 128} plus wgan and wgan-gp at their
     defaults (8 trials), every trial run to the end: no ASHA, no collapse stopper.
  B  Optuna TPE over the full GAN space (search_spaces.gan_space), learning each trial's
     searcher_objective after `--random-trials` random ones, + ASHA that re-ranks running trials
     (tuner/scheduler.py; grace 1, `--reduction-factor`, max_t = epochs) + the collapse stopper,
     `--budget` trials. `--asha ray` runs B with Ray's own ASHAScheduler instead, for comparison.

Both arms run `--concurrency` trials at once, 1 CPU each, and use `--width` for the DCGAN (a
constant of both; A's trials are all DCGANs, B may also pick the MLP pair, as the full space does). For each seed
(trial seeds and the TPE seed) the JSON gives: each arm's best FID and trial-epochs, the
trial-epochs and wall time B needed to first report an FID at or below A's best (counting the
reports completed up to and including that one, in completion order), the same count for A to
reach its own best (the grid runs in order, so its best can come long before its last epoch), and
the trial-epochs of A that went into trials the collapse detector flagged (health collapsed or diverged, as
tuner.analysis ranks them). Target: B reaches A's best FID with <= 25% of A's trial-epochs.

    python bench/search_efficiency.py                     # 3 seeds, about 38 minutes on 2 CPUs
    python bench/search_efficiency.py --seeds 0 --budget 6 --epochs 2 --limit 2000   # a quick check
    python bench/search_efficiency.py --asha ray --out bench/results/search_efficiency_ray_asha.json

Writes bench/results/search_efficiency.json and search_efficiency.png (best FID so far against
trial-epochs, per arm and seed). Asserts nothing.
"""

import argparse
import json
import os
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from machine import machine_info  # bench/machine.py, beside this script
from tuner.run import RANDOM_TRIALS, REDUCTION_FACTOR

TARGET_SHARE = 0.25
SCHEDULERS = {"reranking": ("tuner.scheduler.RerankingASHA", "re-ranking ASHA"),  # --asha: (class, plot label)
              "ray": ("ray.tune.schedulers.ASHAScheduler", "Ray's ASHA")}
TRIAL_COLUMNS = ["loss", "arch", "z_dim", "lr_g", "lr_d", "n_critic", "batch_size"]  # kept with each report
GRID = [{"loss": loss, "z_dim": z} for loss in ("bce", "hinge") for z in (32, 64, 128)] + [{"loss": "wgan"},
                                                                                          {"loss": "wgan-gp"}]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="folder with FashionMNIST/ in torchvision's layout (default: $GANTUNE_DATA_DIR)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="repetitions, one seed each (default: 0 1 2)")
    p.add_argument("--limit", type=int, default=10000, help="fixed training subset of Fashion-MNIST (default: 10000)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per trial in both arms, as in the labs (default: 10)")
    p.add_argument("--budget", type=int, default=24, help="trials TPE may start in arm B (default: 24)")
    p.add_argument("--random-trials", type=int, default=RANDOM_TRIALS,
                   help=f"B: TPE samples at random until this many trials have finished (default: {RANDOM_TRIALS}, as tuner/run.py)")
    p.add_argument("--reduction-factor", type=float, default=REDUCTION_FACTOR,
                   help=f"B: ASHA keeps the top 1/N at each rung (default: {REDUCTION_FACTOR:g}, as tuner/run.py)")
    p.add_argument("--asha", choices=tuple(SCHEDULERS), default="reranking",
                   help="B: reranking = tuner/scheduler.py's RerankingASHA, as tuner/run.py; ray = Ray's "
                        "ASHAScheduler, which judges a trial only when it reaches a rung (default: reranking)")
    p.add_argument("--concurrency", type=int, default=2, help="trials running at once in each arm (default: 2)")
    p.add_argument("--width", type=int, default=32, help="DCGAN width in both arms (default: 32)")
    p.add_argument("--eval-samples", type=int, default=1000, help="generated images per evaluation (default: 1000)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "search_efficiency.json",
                   help="JSON file to write; the PNG goes beside it")
    return p.parse_args(argv)


def run_arm(arm: str, seed: int, args, datasets: dict, storage: str) -> pd.DataFrame:
    """Runs one arm on the running Ray instance; returns its reports in completion order."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from search_spaces import gan_space, with_constants
    from tuner.analysis import load_history, load_trials
    from tuner.objective import CollapseStopper
    from tuner.scheduler import RerankingASHA
    from tuner.searchers import FixedConfigs, tpe_searcher
    from tuner.trainable import TrialSettings, train_trial

    constants = {"model": "gan", "dataset": "fashion_mnist", "epochs": args.epochs, "seed": seed,
                 "width": args.width}
    # searcher_epoch keeps its default, 1: B's ASHA grace period (A's grid has no searcher to feed)
    settings = TrialSettings(eval_samples=args.eval_samples, collapse_warmup=-(-args.epochs // 3))
    if arm == "A":
        points = [{**point, **constants, "arch": "dcgan"} for point in GRID]
        searcher, scheduler, stop = FixedConfigs(points), FIFOScheduler(), None
        num_samples = len(GRID)
    else:
        space = partial(with_constants, gan_space, constants)  # B also searches arch (dcgan/mlp)
        searcher = tpe_searcher(space, seed, args.random_trials)
        asha = RerankingASHA if args.asha == "reranking" else ASHAScheduler
        scheduler = asha(time_attr="epoch", max_t=args.epochs, grace_period=1, reduction_factor=args.reduction_factor)
        stop, num_samples = CollapseStopper(), args.budget
    name = f"{arm}-seed{seed}"
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(train_trial, datasets=datasets, settings=settings), {"cpu": 1}),
        tune_config=tune.TuneConfig(metric="objective", mode="min", search_alg=searcher, scheduler=scheduler,
                                    num_samples=num_samples, max_concurrent_trials=args.concurrency),
        run_config=tune.RunConfig(name=name, storage_path=storage, stop=stop, verbose=1))
    tuner.fit()
    history = load_history(Path(storage) / name)
    trials = load_trials(Path(storage) / name)
    history = history.merge(trials[["trial_id", "health", *TRIAL_COLUMNS]], on="trial_id", how="left")
    history["finished_at"] = history["timestamp"]
    started = (history["timestamp"] - history["time_total_s"]).min()
    history["seconds_since_start"] = history["finished_at"] - started
    return history.sort_values(["finished_at", "time_total_s"], kind="stable").reset_index(drop=True)


def summarise(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    a_best, b_best = float(a["fid"].min()), float(b["fid"].min())
    a_epochs, b_epochs = len(a), len(b)  # one report per trial-epoch
    reached = b.index[b["fid"] <= a_best]
    flagged = a[a["health"].isin(["collapsed", "diverged"])]
    result = {
        "A_best_fid": a_best, "B_best_fid": b_best, "A_trial_epochs": a_epochs, "B_trial_epochs": b_epochs,
        "B_best_fid_within_A_trial_epochs": float(b["fid"].iloc[:a_epochs].min()),  # at equal compute
        "A_trials": int(a["trial_id"].nunique()), "B_trials": int(b["trial_id"].nunique()),
        "A_wall_seconds": float(a["seconds_since_start"].max()), "B_wall_seconds": float(b["seconds_since_start"].max()),
        "A_trial_epochs_to_reach_own_best": int(a.index[a["fid"] <= a_best][0]) + 1,
        "A_trial_epochs_in_flagged_trials": int(len(flagged)),
        "A_flagged_trials": sorted(flagged["trial_id"].unique().tolist()),
        "A_best_trial_loss": str(a.loc[a["fid"].idxmin(), "loss"]),
        "B_best_trial_loss": str(b.loc[b["fid"].idxmin(), "loss"]),
        "B_reached_A_best": bool(len(reached)),
    }
    if len(reached):
        first = reached[0]
        result.update(B_trial_epochs_to_reach_A_best=int(first) + 1,
                      B_seconds_to_reach_A_best=float(b.loc[first, "seconds_since_start"]),
                      B_share_of_A_trial_epochs=(int(first) + 1) / a_epochs)
    return result


def reports(history: pd.DataFrame) -> list[dict]:
    """Every report of one arm in completion order, for the JSON: what was trained and what it scored."""
    columns = ["trial_id", "epoch", "fid", "objective", "health", *TRIAL_COLUMNS, "seconds_since_start"]
    return json.loads(history[columns].round(6).to_json(orient="records"))


def plot(curves: dict, path: Path, asha: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    a_epochs = max(len(history) for (arm, _), history in curves.items() if arm == "A")
    ax.axvline(TARGET_SHARE * a_epochs, color="grey", linestyle=":", label=f"target: {TARGET_SHARE:.0%} of A")
    for (arm, seed), history in curves.items():
        ax.step(np.arange(1, len(history) + 1), history["fid"].cummin(), where="post",
                color="C0" if arm == "A" else "C1", linestyle=["-", "--", "-."][int(seed) % 3], alpha=0.8,
                label=f"{arm} seed {seed}")
    ax.set(xlabel="trial-epochs spent", ylabel="best FID so far", yscale="log",
           title=f"A: seed grid to the end; B: TPE + {SCHEDULERS[asha][1]} + collapse stopper")
    ax.legend(fontsize=7, ncol=2)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    import optuna
    import ray

    from models.data import load_dataset
    from models.evaluation import Evaluator
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    train = load_dataset("fashion_mnist", args.data_dir, train=True).subset(args.limit, seed=0)
    datasets = {"fashion_mnist": (train, Evaluator.for_dataset("fashion_mnist", args.data_dir,
                                                               n_samples=args.eval_samples))}
    started, load_before = time.time(), os.getloadavg()
    ray.init(num_cpus=args.concurrency, include_dashboard=False, log_to_driver=False)
    per_seed, curves = {}, {}
    try:
        with tempfile.TemporaryDirectory() as storage:
            for seed in args.seeds:
                for arm in ("A", "B"):
                    curves[(arm, seed)] = run_arm(arm, seed, args, datasets, storage)
                per_seed[seed] = summarise(curves[("A", seed)], curves[("B", seed)])
                print(f"seed {seed}: {json.dumps(per_seed[seed])}", flush=True)
    finally:
        ray.shutdown()
    shares = [s.get("B_share_of_A_trial_epochs") for s in per_seed.values()]
    report = {
        "machine": machine_info(),
        "load_average_1_5_15": {"before": load_before, "after": os.getloadavg()},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "grid_A": GRID, "B_scheduler": SCHEDULERS[args.asha][0], "per_seed": per_seed,
        "reports": {f"{arm}-seed{seed}": reports(history) for (arm, seed), history in curves.items()},
        "target": f"B reaches A's best FID with <= {TARGET_SHARE:.0%} of A's trial-epochs",
        "seeds_meeting_target": int(sum(s is not None and s <= TARGET_SHARE for s in shares)),
        "seconds": round(time.time() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(curves, args.out.with_suffix(".png"), args.asha)
    print(f"B reached A's best FID within {TARGET_SHARE:.0%} of A's trial-epochs in "
          f"{report['seeds_meeting_target']} of {len(shares)} seeds; shares: {shares}; wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
