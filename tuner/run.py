"""Search GAN/VAE hyperparameters on Ray Tune with Optuna (TPE) and collapse-aware ASHA.

Local:            python tuner/run.py --space smoke
Running cluster:  RAY_ADDRESS=http://HEAD:8265 ray job submit -- python tuner/run.py ARGS
                  RAY_ADDRESS=HEAD:6379 python tuner/run.py ARGS
Cluster launcher: ray submit cluster.yaml tuner/run.py -- ARGS
Resume:           python tuner/run.py --name NAME --storage-path PATH --resume
"""

import json
import math
import os
import signal
import socket
import sys
import threading
import time
from functools import partial
from pathlib import Path

from models.data import DATASETS, load_dataset
from models.errors import (ArgumentParser, UserInputError, exit_on_user_error, require_non_negative,
                           require_positive)

REDUCTION_FACTOR = 2  # ASHA's: rungs at 1, 2, 4 and 8 epochs of a 10-epoch search
RANDOM_TRIALS = 10  # Optuna's default n_startup_trials

PRESETS = {  # defaults each --space brings; explicit flags override them
    "full": dict(model="gan", num_samples=20, epochs=10, limit=None, eval_samples=2000, early_stop=True),
    "smoke": dict(model="gan", num_samples=4, epochs=2, limit=2000, eval_samples=500, early_stop=True),
    "seed-grid": dict(model="both", num_samples=None, epochs=10, limit=None, eval_samples=2000, early_stop=False),
}


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="tuner/run.py", description=__doc__.split("\n")[0],
                       epilog="Flags left unset take the --space preset's defaults.")
    p.add_argument("--model", choices=("gan", "vae", "both"),
                   help="model family to search (default: gan; seed-grid: both, the labs' GANs and VAEs)")
    p.add_argument("--space", choices=tuple(PRESETS), default="full",
                   help="full: the whole Optuna space; smoke: tiny nets and data, about a minute on CPU; "
                        "seed-grid: the lab's exact grid (both MNISTs, every run to the end)")
    p.add_argument("--dataset", nargs="+", choices=DATASETS,
                   help="dataset(s); default fashion_mnist (seed-grid: mnist fashion_mnist)")
    p.add_argument("--data-dir", help="dataset directory on the driver (default: $GANTUNE_DATA_DIR or "
                   "~/.cache/gantune/datasets); trials get the data through Ray's object store")
    p.add_argument("--num-samples", type=int, help="trials to run (default: 20 full, 4 smoke, grid size)")
    p.add_argument("--epochs", type=int, help="epochs per trial, also ASHA's max_t (default: 10, smoke 2)")
    p.add_argument("--limit", type=int, help="train on a fixed random subset of this many images (smoke: 2000)")
    p.add_argument("--eval-samples", type=int, help="generated images per evaluation (default 2000, smoke 500)")
    p.add_argument("--steps-per-report", type=int, default=0,
                   help="report/checkpoint every N training steps instead of every epoch")
    p.add_argument("--gpus-per-trial", type=float,
                   help="GPU share per trial, e.g. 0.25 = 4 trials per GPU (default: 0.25 if the cluster "
                        "has GPUs, else 0)")
    p.add_argument("--cpus-per-trial", type=float, default=1, help="CPUs per trial (default: 1)")
    p.add_argument("--max-concurrent", type=int, help="cap on trials running at once (default: as resources allow)")
    p.add_argument("--grace-period", type=int, default=1, help="ASHA: epochs before a trial can be stopped")
    p.add_argument("--reduction-factor", type=float, default=REDUCTION_FACTOR,
                   help=f"ASHA: keep the top 1/N at each rung, re-checked at every report (default: {REDUCTION_FACTOR:g})")
    p.add_argument("--random-trials", type=int, default=RANDOM_TRIALS,
                   help=f"TPE samples at random until this many trials have finished, then models their results "
                        f"(Optuna's n_startup_trials; default: {RANDOM_TRIALS})")
    p.add_argument("--no-early-stop", action="store_true",
                   help="no ASHA and no collapse stopper: every trial runs to the end")
    p.add_argument("--collapse-patience", type=int, default=2,
                   help="stop a trial after the detector fires this many evaluations in a row (default: 2)")
    p.add_argument("--collapse-warmup", type=float,
                   help="epochs in which a collapsed verdict is penalised but never stops the trial: young "
                        "GANs cover few classes and look collapsed (default: a third of --epochs, rounded up)")
    p.add_argument("--keep-checkpoints", type=int, default=2,
                   help="latest checkpoints kept per trial (default: 2)")
    p.add_argument("--max-failures", type=int, default=2, help="restarts of a failed trial from its last checkpoint")
    p.add_argument("--storage-path", default=str(Path("runs").resolve()),
                   help="where results go: a local directory or a pyarrow URI such as s3://bucket/path "
                        "(default: ./runs)")
    p.add_argument("--name", help="experiment name (default: gantune-<space>-<time>)")
    p.add_argument("--seed", type=int, default=0, help="seed for the searcher and every trial (default: 0)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted experiment --name in --storage-path; finished trials are not rerun")
    return p


def resolve_args(args):
    preset = PRESETS[args.space]
    for key in ("model", "num_samples", "epochs", "limit", "eval_samples"):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    args.early_stop = preset["early_stop"] and not args.no_early_stop
    if args.collapse_warmup is None:
        args.collapse_warmup = math.ceil(args.epochs / 3) if args.epochs and args.epochs > 0 else 0
    args.dataset = args.dataset or (["mnist", "fashion_mnist"] if args.space == "seed-grid" else ["fashion_mnist"])
    for key in ("epochs", "eval_samples", "cpus_per_trial", "reduction_factor", "collapse_patience",
                "keep_checkpoints", "grace_period"):
        require_positive(key.replace("_", "-"), getattr(args, key))
    for key in ("num_samples", "limit", "max_concurrent"):
        if getattr(args, key) is not None:
            require_positive(key.replace("_", "-"), getattr(args, key))
    for key in ("collapse_warmup", "max_failures", "steps_per_report", "random_trials"):
        require_non_negative(key.replace("_", "-"), getattr(args, key))
    gpus = args.gpus_per_trial
    if gpus is not None and (gpus < 0 or (gpus > 1 and gpus != int(gpus))):
        raise UserInputError(f"gpus-per-trial: {gpus} is not allowed; use a fraction in [0, 1] or a whole number")
    if args.space != "seed-grid" and len(args.dataset) > 1:
        raise UserInputError("dataset: an Optuna search takes one dataset; run one search per dataset")
    args.name = args.name or f"gantune-{args.space}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_storage(args.storage_path)
    return args


def check_storage(storage_path: str) -> None:
    """Fail before any trial starts if results could not be written."""
    if "://" in storage_path:
        import pyarrow.fs
        try:
            pyarrow.fs.FileSystem.from_uri(storage_path)
        except Exception as err:
            raise UserInputError(f"storage-path: {storage_path} is not a usable pyarrow URI ({err})") from None
        return
    path = Path(storage_path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise UserInputError(f"storage-path: {storage_path} is not writable ({err.strerror})") from None


RUN_FLAGS = "run-flags.json"  # beside Ray's state: what --resume needs to rebuild the same trials
TRIAL_SHAPING_FLAGS = ("model", "space", "dataset", "num_samples", "epochs", "limit", "eval_samples", "seed",
                       "steps_per_report", "collapse_patience", "collapse_warmup", "early_stop", "grace_period",
                       "reduction_factor", "keep_checkpoints")


def run_flags_file(args) -> tuple:
    """(pyarrow filesystem, path) of the experiment's run-flags.json, local or in a bucket."""
    import pyarrow.fs
    storage = args.storage_path if "://" in args.storage_path else str(Path(args.storage_path).resolve())
    filesystem, root = pyarrow.fs.FileSystem.from_uri(storage)
    return filesystem, f"{root.rstrip('/')}/{args.name}/{RUN_FLAGS}"


def save_run_flags(args) -> None:
    filesystem, path = run_flags_file(args)
    filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with filesystem.open_output_stream(path) as out:
        out.write(json.dumps({k: getattr(args, k) for k in TRIAL_SHAPING_FLAGS}, indent=2).encode())


def restore_run_flags(args) -> None:
    """--resume rebuilds the data and settings the interrupted run used, whatever flags it is given:
    a different --limit or --seed would silently resume trials on other data."""
    import pyarrow.fs
    filesystem, path = run_flags_file(args)
    if filesystem.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
        return  # an experiment from before run-flags.json: the flags given now are all there is
    with filesystem.open_input_stream(path) as stream:
        saved = json.loads(stream.read())
    changed = [k for k, v in saved.items() if getattr(args, k) != v]
    for key in changed:
        setattr(args, key, saved[key])
    if changed:
        print(f"resume: using the interrupted run's {', '.join(changed)} (from {RUN_FLAGS})", file=sys.stderr)


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Ray waits minutes on a dead address; a plain TCP connect tells in seconds."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserInputError(f"RAY_ADDRESS: {address!r} is not HOST:PORT, ray://HOST:PORT or http://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise UserInputError(f"RAY_ADDRESS: cannot reach the Ray cluster at {address} ({err})") from None


def connect_ray() -> bool:
    """Join RAY_ADDRESS, else a cluster already running here (a launcher's head), else start a local
    Ray. True when the cluster was already running: it may add nodes (GPUs) after we start."""
    import ray
    address = os.environ.get("RAY_ADDRESS")
    if address:
        check_reachable(address)
    else:
        try:
            ray.init(address="auto", log_to_driver=True)
            return True
        except ConnectionError:  # nothing running here: a local search
            pass
    try:
        ray.init(address=address, log_to_driver=True, include_dashboard=False if not address else None)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise UserInputError(f"RAY_ADDRESS: cannot connect to the Ray cluster at {address!r} ({err})".split("\n")[0]) from None
    return address not in (None, "local")


def load_datasets(args) -> dict:
    """name -> (training Dataset, Evaluator), built once on the driver and shipped via the object store."""
    from models.evaluation import Evaluator
    datasets = {}
    for name in args.dataset:
        train = load_dataset(name, args.data_dir, train=True)
        if args.limit:
            train = train.subset(args.limit, seed=args.seed)
        datasets[name] = (train, Evaluator.for_dataset(name, args.data_dir, n_samples=args.eval_samples))
    return datasets


def build_tuner(args, datasets: dict):
    import ray
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    from search_spaces import SPACES, seed_grid, with_constants
    from tuner.objective import CollapseStopper
    from tuner.scheduler import RerankingASHA
    from tuner.searchers import FixedConfigs, tpe_searcher
    from tuner.trainable import TrialSettings, train_trial

    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    gpus = args.gpus_per_trial if args.gpus_per_trial is not None else (0.25 if cluster_gpus else 0)
    if gpus > cluster_gpus and not args.joined_cluster:  # a local Ray never grows: the trials would wait forever
        raise UserInputError(f"gpus-per-trial: {gpus} requested but the cluster has {cluster_gpus:g} GPU(s)")
    if gpus > cluster_gpus:
        print(f"gpus-per-trial: {gpus:g} requested and the cluster has {cluster_gpus:g} GPU(s) now; trials wait "
              "for the autoscaler to add GPU nodes", file=sys.stderr)
    settings = TrialSettings(args.eval_samples, args.collapse_patience, args.steps_per_report, args.collapse_warmup,
                             searcher_epoch=args.grace_period if args.early_stop else args.epochs)
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, datasets=datasets, settings=settings),
        {"cpu": args.cpus_per_trial, "gpu": gpus})
    run_config = tune.RunConfig(
        name=args.name, storage_path=args.storage_path,
        stop=CollapseStopper() if args.early_stop else None,
        # The latest N, not the best N by objective: Ray forces an experiment snapshot every N
        # checkpoints of a trial, so the checkpoint the last snapshot names survives only if no
        # checkpoint is deleted before N newer ones exist. Kept by objective, it can be deleted one
        # epoch later, and --resume after a driver crash then fails that trial.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=args.keep_checkpoints),
        failure_config=tune.FailureConfig(max_failures=args.max_failures))
    if args.resume:
        path = f"{args.storage_path.rstrip('/')}/{args.name}"
        if not tune.Tuner.can_restore(path):
            raise UserInputError(f"resume: no experiment to resume at {path}")
        return tune.Tuner.restore(path, trainable=trainable, resume_errored=True)

    constants = {"dataset": args.dataset[0], "epochs": args.epochs, "seed": args.seed}
    if args.space == "seed-grid":
        models = ("gan", "vae") if args.model == "both" else (args.model,)
        points = [{**p, "seed": args.seed} for p in seed_grid(args.dataset, models, args.epochs)]
        searcher, num_samples = FixedConfigs(points), len(points)
    else:
        space = partial(with_constants, SPACES[(args.space, args.model)], constants)
        searcher = tpe_searcher(space, args.seed, args.random_trials)
        num_samples = args.num_samples
    scheduler = (RerankingASHA(time_attr="epoch", max_t=args.epochs, grace_period=args.grace_period,
                               reduction_factor=args.reduction_factor)
                 if args.early_stop else FIFOScheduler())
    tune_config = tune.TuneConfig(metric="objective", mode="min", search_alg=searcher, scheduler=scheduler,
                                  num_samples=num_samples, max_concurrent_trials=args.max_concurrent)
    return tune.Tuner(trainable, tune_config=tune_config, run_config=run_config)


def plain(value):
    """numpy scalars as Python numbers, whole floats as ints, for a readable config line."""
    value = value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


SUMMARY_COLUMNS = ["rank", "trial_id", "model", "loss", "z_dim", "latent_dim", "best_fid", "fid_floor", "health",
                   "end_reason", "epochs_run"]


def print_summary(experiment_path: str):
    """The ranked trials (tuner.analysis's rule), the best config, and the written report."""
    import optuna

    from tuner.analysis import load_trials, write_report
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = load_trials(experiment_path)
    if "best_fid" not in trials or trials["best_fid"].isna().all():
        print("no trial reported an evaluation")
        return trials
    columns = [c for c in SUMMARY_COLUMNS if c in trials and trials[c].notna().any()]
    print("\nTrials ranked (healthy first, then by best FID; see tuner/analysis/ranking.py):")
    print(trials[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    best = trials.iloc[0]
    config = {k: plain(best[k]) for k in ("model", "dataset", "loss", "z_dim", "latent_dim", "lr", "lr_g", "lr_d", "arch",
                                   "n_critic", "clip_value", "gp_lambda", "beta1", "batch_size")
              if k in best and best[k] == best[k]}
    print(f"\nbest: fid={best['best_fid']:.3f} (floor {best['fid_floor']:.3f}) health={best['health']} "
          f"trial={best['trial_id']} config={config}")
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
    args = resolve_args(build_parser().parse_args(argv))
    if args.resume:
        restore_run_flags(args)
    args.joined_cluster = connect_ray()
    import ray
    # a trial fetches its dataset from the object store itself, once it has checked its node can run it
    datasets = {name: ray.put(pair) for name, pair in load_datasets(args).items()}
    with StorageWatch(args.storage_path) as watch:
        try:
            tuner = build_tuner(args, datasets)
            if not args.resume:
                save_run_flags(args)
            results = tuner.fit()
            if any(r.error for r in results):
                check_storage(args.storage_path)  # trials that failed writing results before the watch saw it
        except (Exception, KeyboardInterrupt) as err:
            storage_failed = isinstance(err, UserInputError) and str(err).startswith("storage-path")
            if not (watch.error or storage_failed):
                raise
            watch.error = watch.error or str(err)
    if watch.error:
        raise UserInputError(f"{watch.error}: it stopped taking writes during the run, so the search was stopped; "
                             f"what it recorded until then stays in {args.storage_path.rstrip('/')}/{args.name}")
    trials = print_summary(results.experiment_path)
    unfinished = trials["end_reason"].isin(["running", "pending"]).sum() if "end_reason" in trials else 0
    if unfinished:  # Ctrl+C: Tune saved the experiment state and fit() returned early
        print(f"interrupted with {unfinished} trial(s) unfinished; finish with: python tuner/run.py --name "
              f"{args.name} --storage-path {args.storage_path} --resume (and the same flags)", file=sys.stderr)
        sys.exit(130)
    errors = [r for r in results if r.error]
    if errors:
        print(f"{len(errors)} trial(s) errored; see their error.txt under {results.experiment_path}", file=sys.stderr)


if __name__ == "__main__":
    exit_on_user_error(main)
