"""Optuna's suggestion latency with the project's GAN space: part (c) of bench/overheads.py.

The space is search_spaces' (`--space`), built by tuner.build.search_function as for
tuner/run.py. A TPE study (TPESampler(seed), what Ray's OptunaSearch builds) is filled with
`--finished` trials that report `--report-epochs` intermediate values and are told a synthetic
objective (a deterministic function of the config, with collapsed and diverged trials scored
like tuner/objective.py); then `--asks` timed suggestions = study.ask() + the space function
(define-by-run: the suggest_* calls are where TPE samples). Each timed trial is told FAIL
afterwards, so every ask sees exactly `--finished` finished trials. The same through Ray's
OptunaSearch (suggest / on_trial_result / on_trial_complete, as Tune calls them).

    python bench/overheads.py --parts optuna      # this part alone

overheads.py adds `add_flags` to its command line and keeps `measure(args)` under "optuna" in its
JSON, with `plot` beside it.
"""

import math
import random
import time

import harness  # bench/harness.py, beside this script
from tuner.spec import SearchSpec


def add_flags(p) -> None:
    p.add_argument("--space", choices=("full", "smoke"), default="full",
                   help="GAN search space for (c) (default: full)")
    p.add_argument("--finished", type=int, default=200,
                   help="finished trials in the study before timing (default: 200)")
    p.add_argument("--asks", type=int, default=20, help="timed suggestions (default: 20)")
    p.add_argument("--report-epochs", type=int, default=10,
                   help="intermediate values each filled trial reports, like a 10-epoch trial (default: 10)")
    p.add_argument("--no-ray-searcher", action="store_true", help="skip timing through Ray's OptunaSearch")


def synthetic_objective(config: dict, rng: random.Random) -> float:
    """A made-up but structured FID: good near lr 2e-4, some trials collapse or diverge."""
    from tuner.objective import objective
    lr_g, lr_d = config.get("lr_g", 2e-4), config.get("lr_d", 2e-4)
    fid = 30 + 40 * abs(math.log10(lr_g / 2e-4)) + 25 * abs(math.log10(lr_d / 2e-4)) + rng.gauss(0, 5)
    fid += {"bce": 10, "hinge": 0, "wgan": 25, "wgan-gp": 5}.get(config.get("loss"), 0)
    draw = rng.random()
    return objective(max(fid, 1.0), collapsed=draw < 0.2, diverged=draw > 0.97)


def measure(args) -> dict:
    import optuna
    from optuna.trial import TrialState

    from tuner.build import search_function
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = SearchSpec(space=args.space, epochs=args.report_epochs, seed=args.seed)
    space = search_function(spec)

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
        "spec": spec.to_dict(), "space": args.space,
        "sampler": "TPESampler(seed) with Optuna's defaults (as Ray's OptunaSearch builds it)",
        "finished_trials": complete, "timed_asks": args.asks, "intermediate_reports_per_trial": args.report_epochs,
        "optuna_ask_plus_space_seconds": harness.distribution(timed),
        "optuna_during_fill_seconds": {f"{lo}-{min(lo + 19, args.finished - 1)} finished":
                                       harness.distribution(fill[lo:lo + 20]) for lo in range(0, args.finished, 20)},
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
        result["ray_optunasearch_suggest_seconds"] = harness.distribution(ray_timed)
    return result


def plot(latency: dict, path) -> str:
    """Suggestion latency against the number of finished trials while filling, with the timed median."""
    curve, timed = latency["fill_curve_seconds"], latency["optuna_ask_plus_space_seconds"]
    with harness.figure(path, figsize=(6, 3.5)) as ax:
        ax.plot(range(len(curve)), [t * 1000 for t in curve], ".", ms=3, label="ask + space while filling")
        ax.axhline(timed["median"] * 1000, color="tab:red", lw=1,
                   label=f"median of {timed['n']} asks at {latency['finished_trials']} finished")
        ax.set_xlabel("finished trials in the study")
        ax.set_ylabel("suggestion latency (ms)")
        ax.set_title(f"Optuna TPE, {latency['space']} GAN space", fontsize=10)
        ax.legend(fontsize=8)
    return str(path)


def summary(latency: dict) -> str:
    timed = latency["optuna_ask_plus_space_seconds"]
    line = (f"Optuna TPE suggestion at {latency['finished_trials']} finished: median {timed['median'] * 1000:.1f} ms, "
            f"p90 {timed['p90'] * 1000:.1f} ms")
    if "ray_optunasearch_suggest_seconds" in latency:
        ray_timed = latency["ray_optunasearch_suggest_seconds"]
        line += f" (Ray OptunaSearch: {ray_timed['median'] * 1000:.1f} / {ray_timed['p90'] * 1000:.1f} ms)"
    return line
