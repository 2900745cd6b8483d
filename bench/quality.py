"""Quality at the scale users train: the labs' recipe (A) against the search (B), on all of Fashion-MNIST.

Both arms train DCGANs of `--width` on every training image (`--limit` only for a quick check),
evaluated the same way after every epoch (`--eval-samples` generated images, this project's FID
in its own classifier features, against the same reference):

  A  the labs' six recipes: {bce, hinge} x z_dim {32, 64, 128} at their defaults (Adam 2e-4,
     betas (0.5, 0.999), batch 64), `--epochs` E each, run to the end: 6 E trial-epochs.
  B  Optuna TPE over the full GAN space with arch and width pinned (EMA, D normalisation, beta2,
     learning-rate decay, batch size, the loss and its own fields all searched) + the re-ranking
     ASHA + the collapse stopper, stopped once its trials have trained 6 E epochs in all. TPE
     first tries the `--start-from` recipes (default: sngan-ema, a published recipe; see
     search_spaces/recipes.py), as a user would start from what is known to work.

Every report of both arms is kept (completion order). Per seed: A's and B's best FID, their ratio,
B's best within its first 6 E trial-epochs, the trial-epochs B needed to first beat A's best,
both winners' configs and a 10 x 10 grid of samples from each winner's best generator file
(tuner.handover), and the wall time. Target: B's best FID <= 0.5 x A's best.

    python bench/quality.py                           # E = 5, seed 0: about an hour on 2 CPUs
    python bench/quality.py --seeds 0 1 2 --epochs 10 --gpus-per-trial 0.25 --concurrency 4
    python bench/quality.py --epochs 1 --limit 1000 --width 16 --eval-samples 200   # a quick check

Writes bench/results/quality.json and, beside it, quality.png (best FID so far against
trial-epochs) and quality_seed<S>_<arm>.png (the winners' samples). Asserts nothing.
"""

import json
import sys
import time
from pathlib import Path

import harness  # bench/harness.py, beside this script
from search_spaces.recipes import RECIPES

TARGET_RATIO = 0.5
LAB_RECIPES = [{"loss": loss, "z_dim": z} for loss in ("bce", "hinge") for z in (32, 64, 128)]
CONFIG_COLUMNS = ["loss", "z_dim", "lr_g", "lr_d", "beta1", "beta2", "n_critic", "batch_size", "d_norm",
                  "ema_decay", "ema_start", "lr_decay", "real_label", "gp_lambda", "clip_value"]


def parse_args(argv=None):
    p = harness.parser(__doc__)
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="repetitions, one seed each (default: 0)")
    p.add_argument("--epochs", type=int, default=5, help="E: epochs per trial; each arm gets 6 E trial-epochs "
                   "(default: 5; the labs trained 10)")
    p.add_argument("--limit", type=int, help="train on a fixed subset of this many images (default: all 60,000)")
    p.add_argument("--width", type=int, default=64, help="DCGAN width in both arms (default: 64)")
    p.add_argument("--eval-samples", type=int, default=2000, help="generated images per evaluation (default: 2000)")
    p.add_argument("--random-trials", type=int, default=5,
                   help="B: TPE samples at random until this many trials have finished (default: 5; a 6 E budget "
                        "buys about 15 trials, so the product's 10 would leave TPE almost nothing to model)")
    p.add_argument("--start-from", nargs="*", default=["sngan-ema"], choices=sorted(RECIPES),
                   help="B: recipes TPE tries first (search_spaces/recipes.py; default: sngan-ema; give the flag "
                        "alone for none)")
    p.add_argument("--concurrency", type=int, default=2, help="trials running at once in each arm (default: 2)")
    p.add_argument("--gpus-per-trial", type=float, default=0, help="GPU share per trial (default: 0, CPU)")
    p.add_argument("--storage", type=Path, default=Path("runs") / f"bench-quality-{time.strftime('%Y%m%d-%H%M%S')}",
                   help="where both arms' experiments are kept, with the winners' weights; give an earlier run's "
                        "to finish it: arms already there are resumed, not redone (default: runs/bench-quality-<time>)")
    p.add_argument("--reuse-a", type=Path, metavar="JSON",
                   help="take arm A's reports and winner grid from an earlier quality JSON instead of retraining "
                        "the six recipes: refused unless its A spec per seed equals this run's (storage aside)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "quality.json",
                   help="JSON file to write; the PNGs go beside it")
    return p.parse_args(argv)


def arm_specs(seed: int, args) -> dict:
    """The two SearchSpecs of one seed: the same data, width, epochs and evaluation."""
    from tuner.spec import SearchSpec
    common = dict(storage_path=str(args.storage), datasets=("fashion_mnist",), data_dir=args.data_dir,
                  limit=args.limit, epochs=args.epochs, eval_samples=args.eval_samples, seed=seed,
                  gpus_per_trial=args.gpus_per_trial, max_concurrent=args.concurrency, keep_checkpoints=1)
    budget = len(LAB_RECIPES) * args.epochs
    return {
        "A": SearchSpec(name=f"A-seed{seed}", space="configs", trial_configs=tuple(
            {"model": "gan", **recipe, "width": args.width, "arch": "dcgan"} for recipe in LAB_RECIPES),
            early_stop=False, **common),
        "B": SearchSpec(name=f"B-seed{seed}", space="full", model="gan", fixed={"arch": "dcgan", "width": args.width},
                        num_samples=10 * budget, budget_trial_epochs=budget, random_trials=args.random_trials,
                        start_from=tuple(RECIPES[name].config for name in args.start_from), **common),
    }


def reused_arm_a(path: Path, seed: int, spec) -> tuple:
    """Arm A of `seed` from a stored quality JSON: its reports and its winner grid's file name,
    provided the stored spec equals `spec` in everything but where it was kept (A is fixed
    configurations run to the end, so it is the same experiment). Exit 2 otherwise."""
    import pandas as pd
    if not path.is_file():
        refuse(f"--reuse-a: {path} is not a file; give a JSON written by bench/quality.py")
    stored, key = json.loads(path.read_text()), f"A-seed{seed}"
    theirs, ours = stored.get("specs", {}).get(key), json.loads(spec.to_json())  # tuples as the file has them
    if theirs is None:
        refuse(f"--reuse-a: {path} has no arm {key}; it has {', '.join(sorted(stored.get('specs', {}))) or 'none'}")
    differ = sorted(k for k in ours.keys() | theirs.keys() if k != "storage_path" and ours.get(k) != theirs.get(k))
    if differ:
        refuse(f"--reuse-a: {path} ran arm {key} with other settings ({', '.join(differ)}); run it afresh")
    return pd.DataFrame(stored["reports"][key]), stored["per_seed"][str(seed)]["A_winner_samples"]


def refuse(message: str):
    print(message, file=sys.stderr)
    raise SystemExit(2)


def healthy(reports):
    """The reports whose verdict was not collapsed or diverged: bench/harness.py's rule, shared."""
    return harness.healthy(reports)


def best_fid(reports) -> float | None:
    return float(reports["fid"].min()) if len(reports) else None


def summarise(a, b, budget: int) -> dict:
    """The seed's figures, all from the two arms' reports (tests/test_bench_quality.py recomputes them).
    Every best is the best healthy report's; a flagged report with a lower FID shows as *_any_verdict."""
    a_healthy, b_healthy = healthy(a), healthy(b)
    a_best, b_best = best_fid(a_healthy), best_fid(b_healthy)
    passed = b_healthy.index[b_healthy["fid"] < a_best] if a_best is not None else []
    result = {
        "A_best_fid": a_best, "B_best_fid": b_best,
        "B_over_A_best_fid": b_best / a_best if a_best and b_best is not None else None,
        "A_best_fid_any_verdict": best_fid(a), "B_best_fid_any_verdict": best_fid(b),
        "B_best_fid_within_budget": best_fid(healthy(b.iloc[:budget])),
        "A_trial_epochs": len(a), "B_trial_epochs": len(b), "budget_trial_epochs": budget,
        "A_trials": int(a["trial_id"].nunique()), "B_trials": int(b["trial_id"].nunique()),
        "A_flagged_reports": len(a) - len(a_healthy), "B_flagged_reports": len(b) - len(b_healthy),
        "A_wall_seconds": float(a["seconds_since_start"].max()), "B_wall_seconds": float(b["seconds_since_start"].max()),
        "B_passed_A_best": bool(len(passed)),
        "meets_target": b_best is not None and a_best is not None and b_best <= TARGET_RATIO * a_best,
    }
    for arm, rows in (("A", a_healthy if len(a_healthy) else a), ("B", b_healthy if len(b_healthy) else b)):
        best_row = rows.loc[rows["fid"].idxmin()]  # the best healthy report's trial, else the best flagged one's
        result[f"{arm}_winner_trial"], result[f"{arm}_winner_health"] = str(best_row["trial_id"]), str(best_row["health"])
    if len(passed):
        result["B_trial_epochs_to_pass_A_best"] = int(passed[0]) + 1
    return result


def winner_config(reports, trial_id: str) -> dict:
    row = reports[reports["trial_id"] == trial_id].iloc[0]
    present = [c for c in CONFIG_COLUMNS if c in row]
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row[present].items() if v == v}


def save_winner_grid(experiment: Path, trial_id: str, path: Path) -> str:
    """100 samples of the trial's best generator file: what a user would get from tuner.sample."""
    from models.grids import save_grid
    from tuner.handover import load_generator, sample
    generator, _, meta = load_generator(experiment, trial_id)
    save_grid(sample(generator, meta, 100, seed=0), path, nrow=10)
    return path.name


def main(argv=None) -> dict:
    args = parse_args(argv)
    import optuna

    from tuner.spec import SPEC_FILE
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args.storage = args.storage.resolve()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = harness.Report(args)
    budget = len(LAB_RECIPES) * args.epochs
    per_seed, curves, specs = {}, {}, {}
    reused = {seed: reused_arm_a(args.reuse_a, seed, arm_specs(seed, args)["A"]) for seed in args.seeds} \
        if args.reuse_a else {}
    with harness.local_ray(num_cpus=args.concurrency, num_gpus=1 if args.gpus_per_trial else 0):
        for seed in args.seeds:
            for arm, spec in arm_specs(seed, args).items():
                specs[f"{arm}-seed{seed}"] = spec.to_dict()
                if arm == "A" and seed in reused:
                    curves[(arm, seed)] = reused[seed][0]
                    continue
                # an arm already in --storage (an interrupted run of this script) is finished, not redone
                resume = (Path(spec.experiment_path) / SPEC_FILE).is_file()
                curves[(arm, seed)] = harness.run_spec(spec, config_columns=CONFIG_COLUMNS, resume=resume).reports
            a, b = curves[("A", seed)], curves[("B", seed)]
            summary = summarise(a, b, budget)
            for arm, reports in (("A", a), ("B", b)):
                trial = summary[f"{arm}_winner_trial"]
                summary[f"{arm}_winner_config"] = winner_config(reports, trial)
                if arm == "A" and seed in reused:  # its grid lies beside the file it came from
                    summary["A_reused_from"], summary["A_winner_samples"] = args.reuse_a.name, reused[seed][1]
                    continue
                summary[f"{arm}_winner_samples"] = save_winner_grid(
                    args.storage / f"{arm}-seed{seed}", trial, args.out.with_name(f"{args.out.stem}_seed{seed}_{arm}.png"))
            per_seed[seed] = summary
            print(f"seed {seed}: {json.dumps(summary)}", flush=True)
    report.update({
        "specs": specs, "lab_recipes_A": LAB_RECIPES, "per_seed": per_seed,
        "reports": {f"{arm}-seed{seed}": harness.report_records(r, CONFIG_COLUMNS) for (arm, seed), r in curves.items()},
        "target": f"B's best FID <= {TARGET_RATIO} x A's best",
        "seeds_meeting_target": int(sum(s["meets_target"] for s in per_seed.values())),
    })
    report.write(args.out)
    harness.plot_best_so_far(curves, args.out.with_suffix(".png"),
                             "A: the labs' six recipes; B: TPE + re-ranking ASHA + collapse stopper",
                             (budget, "6 E trial-epochs"), ylabel="best FID so far (this project's features)")
    print(f"B's best <= {TARGET_RATIO} x A's best in {report['seeds_meeting_target']} of {len(per_seed)} seeds; "
          f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
