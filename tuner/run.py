"""Search GAN/VAE hyperparameters on Ray Tune with Optuna (TPE) and collapse-aware ASHA.

Local:            python tuner/run.py --space demo
Your own GAN:     python tuner/run.py --trainer my_gan:make_trainer --space my_gan:space
Running cluster:  RAY_ADDRESS=http://HEAD:8265 ray job submit -- python tuner/run.py ARGS
                  RAY_ADDRESS=HEAD:6379 python tuner/run.py ARGS
Cluster launcher: ray submit cluster.yaml tuner/run.py -- ARGS
Resume:           python tuner/run.py --name NAME --storage-path PATH --resume
Start over:       python tuner/run.py --name NAME --storage-path PATH --overwrite ARGS
"""

import json
import os
import signal
import sys
import threading
from pathlib import Path

from models.data import DATASETS
from models.errors import ArgumentParser, UserInputError, exit_on_user_error
from search_spaces.recipes import RECIPES
from tuner.build import check_storage, tune
from tuner.objective import EndReason, hyperparameters
from tuner.scheduler import ASHA_VARIANTS
from tuner.spec import MODELS, PRESETS, SPEC_FILE, SearchSpec, preset, read_configs_file

D = SearchSpec  # the defaults shown in --help are the spec's own


def preset_values(key: str) -> str:
    """What the presets set `key` to, for --help: "demo 10, smoke 4"."""
    return ", ".join(f"{space} {values[key]}" for space, values in PRESETS.items() if key in values)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="tuner/run.py", description=__doc__.split("\n")[0],
                       epilog="Flags left unset take the --space preset's defaults.")
    p.add_argument("--space", default="full",
                   help="full: the whole Optuna space; demo: 12 width-32 GANs on 20k images, about four minutes "
                        "on a 2-core CPU (make tune); smoke: tiny nets and data, about a minute on CPU; "
                        "seed-grid: the lab's exact grid (both MNISTs, every run to the end); configs: the "
                        "configurations of --configs FILE, each once, to the end; or package.module:function, "
                        "your own Optuna define-by-run space (default: full)")
    p.add_argument("--configs", metavar="FILE",
                   help="with --space configs: a YAML or JSON list of configurations (hyperparameters, e.g. "
                        "loss: wgan, and model: gan or vae), each trained once to the end with no early stopping; "
                        "the labs' comparisons are in experiments/")
    p.add_argument("--model", choices=MODELS, help="built-in model family to search (default: gan; seed-grid: both)")
    p.add_argument("--trainer", help="package.module:factory: train your own model instead (the protocol is in "
                   "tuner/trainers.py); modules are found from the current directory, as with python -m")
    p.add_argument("--dataset", dest="datasets", nargs="+", choices=DATASETS,
                   help="dataset(s); default fashion_mnist (seed-grid: mnist fashion_mnist)")
    p.add_argument("--data-dir", help="dataset directory on the driver (default: $GANTUNE_DATA_DIR or "
                   "~/.cache/gantune/datasets; image_folder: the folder of images, or of one sub-folder per "
                   "class); trials get the data through Ray's object store")
    p.add_argument("--image-size", type=int, help="image_folder and idx: resize to this square size (default: "
                   "image_folder 64, idx its own); the dcgan nets take 28 or a power of two >= 8")
    p.add_argument("--idx-images", help="with --dataset idx: the IDX image file (ubyte, as MNIST's)")
    p.add_argument("--idx-labels", help="with --dataset idx: the IDX label file that goes with it")
    p.add_argument("--fixed", nargs="+", metavar="KEY=VALUE",
                   help="hyperparameters pinned for every trial and never searched, e.g. width=64 arch=dcgan "
                        "(VALUE is read as JSON, else as a string)")
    p.add_argument("--start-from", nargs="+", metavar="RECIPE|FILE",
                   help="points TPE tries first, then it searches as usual: a recipe ("
                        + "; ".join(f"{name}: {recipe.source}" for name, recipe in RECIPES.items())
                        + ") or a JSON file of hyperparameters, such as a trial's params.json (its dataset, epochs "
                          "and seed are dropped); values the space does not search are ignored")
    p.add_argument("--num-samples", type=int, help=f"trials to run (default: {D.num_samples or 20}; {preset_values('num_samples')})")
    p.add_argument("--budget-trial-epochs", type=float,
                   help="stop the whole search once its trials have trained this many epochs in all (the "
                        "running ones are stopped there); default: no budget")
    p.add_argument("--epochs", type=int, help=f"epochs per trial, also ASHA's max_t (default: {D.epochs}; "
                                                     f"{preset_values('epochs')})")
    p.add_argument("--limit", type=int, help="train on a fixed random subset of this many images (default: all; "
                                                 f"{preset_values('limit')})")
    p.add_argument("--eval-samples", type=int, help=f"generated images per evaluation (default {D.eval_samples}; "
                                                    f"{preset_values('eval_samples')})")
    p.add_argument("--steps-per-report", type=int,
                   help="report/checkpoint every N training steps instead of every epoch")
    p.add_argument("--gpus-per-trial", type=float,
                   help="GPU share per trial, e.g. 0.25 = 4 trials per GPU (default: 0.25 if the cluster "
                        "has GPUs, else 0)")
    p.add_argument("--cpus-per-trial", type=float, help=f"CPUs per trial (default: {D.cpus_per_trial:g})")
    p.add_argument("--max-concurrent", type=int, help="cap on trials running at once (default: as resources allow)")
    p.add_argument("--asha", choices=tuple(ASHA_VARIANTS),
                   help="reranking: ASHA that re-checks running trials at every report (tuner/scheduler.py); "
                        "ray: Ray's ASHAScheduler (default: reranking)")
    p.add_argument("--grace-period", type=int, help=f"ASHA: epochs before a trial can be stopped "
                                                    f"(default: {D.grace_period})")
    p.add_argument("--reduction-factor", type=float,
                   help=f"ASHA: keep the top 1/N at each rung (default: {D.reduction_factor:g})")
    p.add_argument("--random-trials", type=int,
                   help=f"TPE samples at random until this many trials have finished, then models their results "
                        f"(Optuna's n_startup_trials; default: {D.random_trials})")
    p.add_argument("--no-early-stop", dest="early_stop", action="store_const", const=False,
                   help="no ASHA and no collapse stopper: every trial runs to the end")
    p.add_argument("--collapse-patience", type=int,
                   help=f"stop a trial after the detector fires this many evaluations in a row "
                        f"(default: {D.collapse_patience})")
    p.add_argument("--collapse-warmup", type=float,
                   help="epochs in which a collapsed verdict is penalised but never stops the trial: young "
                        "GANs cover few classes and look collapsed (default: a third of --epochs, rounded up)")
    p.add_argument("--keep-checkpoints", type=int,
                   help=f"latest checkpoints kept per trial (default: {D.keep_checkpoints})")
    p.add_argument("--max-failures", type=int,
                   help=f"restarts of a failed trial from its last checkpoint (default: {D.max_failures})")
    p.add_argument("--storage-path", help="where results go: a local directory or a pyarrow URI such as "
                                          "s3://bucket/path (default: ./runs)")
    p.add_argument("--name", help="experiment name (default: gantune-<space>-<time>)")
    p.add_argument("--seed", type=int, help="seed for the searcher and every trial (default: 0)")
    p.add_argument("--resume", action="store_true",
                   help=f"continue the interrupted experiment --name in --storage-path with its own settings "
                        f"({SPEC_FILE}); finished trials are not rerun")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the experiment --name in --storage-path and start it again (without it, or "
                        "--resume, an existing experiment is refused)")
    return p


def parse_fixed(pairs: list[str] | None) -> dict:
    fixed = {}
    for pair in pairs or ():
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise UserInputError(f"fixed: {pair!r} is not KEY=VALUE")
        try:
            fixed[key] = json.loads(text)
        except json.JSONDecodeError:
            fixed[key] = text
    return fixed


def load_start_point(text: str) -> dict:
    """A --start-from value: a recipe's name, or a JSON file holding one dict of hyperparameters."""
    if text in RECIPES:
        return dict(RECIPES[text].config)
    path = Path(text)
    if not path.is_file():
        raise UserInputError(f"start-from: {text!r} is neither a recipe ({', '.join(RECIPES)}) nor a JSON file")
    try:
        point = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserInputError(f"start-from: {text} is not a readable JSON file ({err})") from None
    if not isinstance(point, dict):
        raise UserInputError(f"start-from: {text} holds a JSON {type(point).__name__}; expected an object of "
                             "hyperparameters")
    return {k: v for k, v in point.items() if k not in ("dataset", "epochs", "seed")}


def spec_from_args(args) -> SearchSpec:
    """The preset of --space, overridden by every flag given."""
    skipped = ("space", "resume", "overwrite", "fixed", "start_from", "configs")
    given = {k: v for k, v in vars(args).items() if v is not None and k not in skipped}
    if args.start_from:  # else the preset's own start points, if any
        given["start_from"] = tuple(load_start_point(text) for text in args.start_from)
    trial_configs = read_configs_file(args.configs) if args.configs else ()
    try:
        return preset(args.space, fixed=parse_fixed(args.fixed), trial_configs=trial_configs, **given)
    except UserInputError as err:  # a configuration's bad value: name the file it came from
        if args.configs and str(err).startswith("configs: configuration"):
            raise UserInputError(f"configs: {args.configs}: {str(err).removeprefix('configs: ')}") from None
        raise


def plain(value):
    """numpy scalars as Python numbers, whole floats as ints, for a readable config line."""
    value = value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


SUMMARY_COLUMNS = ["rank", "trial_id", "model", "loss", "z_dim", "latent_dim", "best_fid", "fid_floor", "health",
                   "end_reason", "epochs_run"]


def print_summary(results):
    """The ranked trials (tuner.analysis's rule), the best config, and the written report."""
    import optuna

    from tuner.analysis import load_trials, write_report
    from tuner.analysis.ranking import no_healthy_warning
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    experiment_path = results.experiment_path
    trials = load_trials(experiment_path)
    if "best_fid" not in trials or trials["best_fid"].isna().all():
        print("no trial reported an evaluation")
        return trials
    columns = [c for c in SUMMARY_COLUMNS if c in trials and trials[c].notna().any()]
    print("\nTrials ranked (healthy first, then by best FID; see tuner/analysis/ranking.py):")
    print(trials[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    best = trials.iloc[0]
    config = next(r.config for r in results if r.metrics.get("trial_id") == best["trial_id"])
    config = {k: plain(v) for k, v in {"model": config["model"], "dataset": config["dataset"],
                                       **hyperparameters(config)}.items()}
    print(f"\nbest: fid={best['best_fid']:.3f} (floor {best['fid_floor']:.3f}) health={best['health']} "
          f"trial={best['trial_id']} config={config}")
    warning = no_healthy_warning(trials)
    if warning:
        print(warning)
    if "://" in experiment_path:
        print(f"results: {experiment_path} (copy it back and run python -m tuner.analysis on it for the report)")
        return trials
    print(f"report: {write_report(experiment_path)}")
    print(f"results: {experiment_path}")
    return trials


class StorageWatch:
    """While a search runs, checks every 2 s that a local storage path still takes writes. When it
    stops (disk gone, mount lost), the watch interrupts the search as Ctrl+C does (Tune ends the
    trials and returns) rather than let every trial fail, retry and fail again."""

    def __init__(self, storage_path: str):
        self.storage_path, self.error = storage_path, None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def watch(self) -> None:
        while not self.done.wait(2):
            try:
                check_storage(self.storage_path)
            except UserInputError as err:
                self.error = str(err)
                os.kill(os.getpid(), signal.SIGINT)
                return

    def __enter__(self):
        if "://" not in self.storage_path:  # a local or mounted path; an object store URI is not probed
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if os.getcwd() not in sys.path:  # --trainer and --space modules are found from here, as with python -m
        sys.path.insert(0, os.getcwd())
    spec = spec_from_args(args)
    check_storage(spec.storage_path)  # before the watch: a path unusable from the start is a bad flag
    with StorageWatch(spec.storage_path) as watch:
        try:
            results = tune(spec, resume=args.resume, overwrite=args.overwrite)
            if any(r.error for r in results):
                check_storage(spec.storage_path)  # trials that failed writing results before the watch saw it
        except (Exception, KeyboardInterrupt) as err:
            storage_failed = isinstance(err, UserInputError) and str(err).startswith("storage-path")
            if not (watch.error or storage_failed):
                raise
            watch.error = watch.error or str(err)
    if watch.error:
        raise UserInputError(f"{watch.error}: it stopped taking writes during the run, so the search was stopped; "
                             f"what it recorded until then stays in {spec.experiment_path}")
    trials = print_summary(results)
    unfinished = trials["end_reason"].isin([EndReason.RUNNING, EndReason.PENDING]).sum() if "end_reason" in trials else 0
    if unfinished:  # Ctrl+C: Tune saved the experiment state and fit() returned early
        print(f"interrupted with {unfinished} trial(s) unfinished; finish with: python tuner/run.py --name "
              f"{spec.name} --storage-path {spec.storage_path} --resume", file=sys.stderr)
        sys.exit(130)
    if results.num_errors:
        print(errored_summary(trials, results.num_errors, results.experiment_path), file=sys.stderr)
        sys.exit(1)


def errored_summary(trials, count: int, experiment_path: str) -> str:
    """One line for a search whose trials errored: how many, and the first one's error (the last
    line of its error.txt: the exception and its message)."""
    errored = trials[trials["end_reason"] == EndReason.ERROR] if "end_reason" in trials else trials.iloc[:0]
    first = next((f"; first, trial {row['trial_id']}: {row['error']}" for _, row in errored.iterrows()
                  if isinstance(row.get("error"), str)), "")
    return f"{count} trial(s) errored{first} (see error.txt in their directories under {experiment_path})"


def cli() -> None:
    """The command line (tuner/run.py, python -m tuner.run, gantune-tune): bad input is one line
    and exit status 2 (models.errors), an errored trial exit status 1, an interrupt 130."""
    exit_on_user_error(main)


if __name__ == "__main__":
    cli()
