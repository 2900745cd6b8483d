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
reach its own best (the grid runs in order, so its best can come long before its last epoch), each
arm's share of reports the collapse detector flagged, and the trial-epochs of A that went into
trials flagged at their end (health collapsed or diverged, as tuner.analysis ranks them). Every
best counts healthy reports only (bench/harness.py's `healthy`: no collapse penalty in the
objective); the best of any verdict is kept beside it as *_any_verdict. Target: B reaches A's
best FID with <= 25% of A's trial-epochs.

    python bench/search_efficiency.py                     # 3 seeds, about 38 minutes on 2 CPUs
    python bench/search_efficiency.py --seeds 0 --budget 6 --epochs 2 --limit 2000   # a quick check
    python bench/search_efficiency.py --asha ray --out bench/results/search_efficiency_ray_asha.json
    python bench/search_efficiency.py --recompute bench/results/search_efficiency*.json   # summaries only

Writes bench/results/search_efficiency.json and search_efficiency.png (best healthy FID so far
against trial-epochs, per arm and seed). Asserts nothing.
"""

import json
from pathlib import Path

import pandas as pd

import harness  # bench/harness.py, beside this script
from tuner.scheduler import ASHA_VARIANTS
from tuner.spec import SearchSpec

TARGET_SHARE = 0.25
SCHEDULER_LABELS = {"reranking": "re-ranking ASHA", "ray": "Ray's ASHA"}  # --asha: plot label
TRIAL_COLUMNS = ["loss", "arch", "z_dim", "lr_g", "lr_d", "n_critic", "batch_size"]  # kept with each report
GRID = [{"loss": loss, "z_dim": z} for loss in ("bce", "hinge") for z in (32, 64, 128)] + [{"loss": "wgan"},
                                                                                          {"loss": "wgan-gp"}]


def parse_args(argv=None):
    p = harness.parser(__doc__)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="repetitions, one seed each (default: 0 1 2)")
    p.add_argument("--limit", type=int, default=10000, help="fixed training subset of Fashion-MNIST (default: 10000)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per trial in both arms, as in the labs (default: 10)")
    p.add_argument("--budget", type=int, default=24, help="trials TPE may start in arm B (default: 24)")
    p.add_argument("--random-trials", type=int, default=SearchSpec.random_trials,
                   help=f"B: TPE samples at random until this many trials have finished (default: "
                        f"{SearchSpec.random_trials}, as tuner/run.py)")
    p.add_argument("--reduction-factor", type=float, default=SearchSpec.reduction_factor,
                   help=f"B: ASHA keeps the top 1/N at each rung (default: {SearchSpec.reduction_factor:g}, as tuner/run.py)")
    p.add_argument("--asha", choices=tuple(ASHA_VARIANTS), default="reranking",
                   help="B: reranking = tuner/scheduler.py's RerankingASHA, as tuner/run.py; ray = Ray's "
                        "ASHAScheduler, which judges a trial only when it reaches a rung (default: reranking)")
    p.add_argument("--concurrency", type=int, default=2, help="trials running at once in each arm (default: 2)")
    p.add_argument("--width", type=int, default=32, help="DCGAN width in both arms (default: 32)")
    p.add_argument("--eval-samples", type=int, default=1000, help="generated images per evaluation (default: 1000)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "search_efficiency.json",
                   help="JSON file to write; the PNG goes beside it")
    p.add_argument("--recompute", type=Path, nargs="+", metavar="JSON",
                   help="rerun nothing: rewrite these stored JSONs' summaries (and PNGs) from the reports they keep")
    return p.parse_args(argv)


def arm_spec(arm: str, seed: int, args, storage: str) -> SearchSpec:
    """A: the grid, every trial to the end. B: TPE over the full GAN space (arch searched too) with
    ASHA and the collapse stopper. Both at the same width, epochs, data and evaluation."""
    common = dict(name=f"{arm}-seed{seed}", storage_path=storage, epochs=args.epochs, seed=seed, limit=args.limit,
                  eval_samples=args.eval_samples, max_concurrent=args.concurrency, data_dir=args.data_dir,
                  max_failures=0)
    if arm == "A":
        return SearchSpec(space="configs", trial_configs=GRID, fixed={"width": args.width, "arch": "dcgan"},
                          early_stop=False, **common)
    return SearchSpec(space="full", fixed={"width": args.width}, num_samples=args.budget, asha=args.asha,
                      random_trials=args.random_trials, reduction_factor=args.reduction_factor, **common)


def best_fid(reports: pd.DataFrame) -> float | None:
    return float(reports["fid"].min()) if len(reports) else None


def first_at_or_below(reports: pd.DataFrame, fid: float | None) -> int | None:
    """Trial-epochs spent (completion order) up to the first of these reports at or below `fid`."""
    reached = reports.index[reports["fid"] <= fid] if fid is not None else []
    return int(reached[0]) + 1 if len(reached) else None


def best_loss(reports: pd.DataFrame) -> str | None:
    return str(reports.loc[reports["fid"].idxmin(), "loss"]) if len(reports) else None


def summarise(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """The seed's figures from the two arms' reports (completion order; tests/test_bench.py recomputes
    them). Every best is the best healthy report's (harness.healthy: not flagged collapsed or
    diverged); the best of any verdict stands beside it as *_any_verdict, lower where a flagged
    report scored a lower FID."""
    a_healthy, b_healthy = harness.healthy(a), harness.healthy(b)
    a_best, b_best = best_fid(a_healthy), best_fid(b_healthy)
    a_epochs, b_epochs = len(a), len(b)  # one report per trial-epoch
    within = b.iloc[:a_epochs]  # B at A's compute
    flagged_trials = a[a["health"].isin(["collapsed", "diverged"])]  # the trial's verdict at its end
    result = {
        "A_best_fid": a_best, "B_best_fid": b_best,
        "A_best_fid_any_verdict": best_fid(a), "B_best_fid_any_verdict": best_fid(b),
        "A_trial_epochs": a_epochs, "B_trial_epochs": b_epochs,
        "B_best_fid_within_A_trial_epochs": best_fid(harness.healthy(within)),
        "B_best_fid_within_A_trial_epochs_any_verdict": best_fid(within),
        "A_trials": int(a["trial_id"].nunique()), "B_trials": int(b["trial_id"].nunique()),
        "A_wall_seconds": float(a["seconds_since_start"].max()), "B_wall_seconds": float(b["seconds_since_start"].max()),
        "A_trial_epochs_to_reach_own_best": first_at_or_below(a_healthy, a_best),
        "A_flagged_reports": a_epochs - len(a_healthy), "B_flagged_reports": b_epochs - len(b_healthy),
        "A_flagged_share": 1 - len(a_healthy) / a_epochs, "B_flagged_share": 1 - len(b_healthy) / b_epochs,
        "A_trial_epochs_in_flagged_trials": int(len(flagged_trials)),
        "A_flagged_trials": sorted(flagged_trials["trial_id"].unique().tolist()),
        "A_best_trial_loss": best_loss(a_healthy), "B_best_trial_loss": best_loss(b_healthy),
    }
    reached = first_at_or_below(b_healthy, a_best)
    result["B_reached_A_best"] = reached is not None
    if reached is not None:
        result.update(B_trial_epochs_to_reach_A_best=reached,
                      B_seconds_to_reach_A_best=float(b.loc[reached - 1, "seconds_since_start"]),
                      B_share_of_A_trial_epochs=reached / a_epochs)
    return result


def seeds_meeting_target(per_seed: dict) -> int:
    return int(sum(s.get("B_share_of_A_trial_epochs", 1) <= TARGET_SHARE for s in per_seed.values()))


def plot(curves: dict, path: Path, asha: str) -> None:
    """Best healthy FID so far: a flagged report never lowers the curve."""
    a_epochs = max(len(history) for (arm, _), history in curves.items() if arm == "A")
    healthy_only = {key: reports.assign(fid=reports["fid"].where(reports.index.isin(harness.healthy(reports).index)))
                    for key, reports in curves.items()}
    harness.plot_best_so_far(healthy_only, path, f"A: seed grid to the end; B: TPE + {SCHEDULER_LABELS[asha]} + "
                             "collapse stopper", (TARGET_SHARE * a_epochs, f"target: {TARGET_SHARE:.0%} of A"),
                             ylabel="best healthy FID so far")


def recompute(path: Path) -> dict:
    """Rewrites a stored JSON's summary (per_seed, seeds_meeting_target) and its PNG from the reports
    it keeps, with this script's summarise: nothing is rerun, every other field is kept."""
    report = json.loads(path.read_text())
    curves = {}
    for name, records in report["reports"].items():
        arm, seed = name.split("-seed")
        curves[(arm, int(seed))] = pd.DataFrame(records)
    seeds = sorted({seed for _, seed in curves})
    report["per_seed"] = {str(seed): summarise(curves[("A", seed)], curves[("B", seed)]) for seed in seeds}
    report["seeds_meeting_target"] = seeds_meeting_target(report["per_seed"])
    report["summary_recomputed"] = ("per_seed and seeds_meeting_target recomputed from the stored reports "
                                    "(bench/search_efficiency.py --recompute); the benchmark was not rerun")
    path.write_text(json.dumps(report, indent=2) + "\n")
    plot(curves, path.with_suffix(".png"), report["settings"].get("asha", "reranking"))
    return report


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.recompute:
        return {str(path): recompute(path) for path in args.recompute}
    import optuna

    from tuner.build import load_datasets
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # the subset's seed is 0 for every seed: both arms of all seeds train on the same images
    datasets = load_datasets(SearchSpec(limit=args.limit, eval_samples=args.eval_samples, data_dir=args.data_dir))
    report = harness.Report(args)
    per_seed, curves, specs = {}, {}, {}
    with harness.local_ray(num_cpus=args.concurrency), harness.experiment_storage(None, "gantune-se-") as storage:
        for seed in args.seeds:
            for arm in ("A", "B"):
                spec = arm_spec(arm, seed, args, storage)
                specs[spec.name] = spec.to_dict()
                curves[(arm, seed)] = harness.run_spec(spec, datasets, config_columns=TRIAL_COLUMNS).reports
            per_seed[seed] = summarise(curves[("A", seed)], curves[("B", seed)])
            print(f"seed {seed}: {json.dumps(per_seed[seed])}", flush=True)
    report.update({
        "grid_A": GRID, "specs": specs, "per_seed": per_seed,
        "reports": {f"{arm}-seed{seed}": harness.report_records(history, TRIAL_COLUMNS)
                    for (arm, seed), history in curves.items()},
        "target": f"B reaches A's best FID with <= {TARGET_SHARE:.0%} of A's trial-epochs",
        "seeds_meeting_target": seeds_meeting_target(per_seed),
    })
    report.write(args.out)
    plot(curves, args.out.with_suffix(".png"), args.asha)
    shares = [s.get("B_share_of_A_trial_epochs") for s in per_seed.values()]
    print(f"B reached A's best healthy FID within {TARGET_SHARE:.0%} of A's trial-epochs in "
          f"{report['seeds_meeting_target']} of {len(shares)} seeds; shares: {shares}; wrote {args.out}")
    return report

if __name__ == "__main__":
    main()
