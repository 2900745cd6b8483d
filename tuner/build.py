"""From a SearchSpec to a Ray Tune experiment: the one place a Tuner is built.

    build_tuner(spec, datasets=None, trainable=None) -> ray.tune.Tuner   (tuner/run.py, bench/)
    tune(spec) -> ray.tune.ResultGrid                                     (notebooks)
"""

import os
import socket
import sys
from functools import partial
from pathlib import Path

from models.data import load_dataset
from models.errors import UserInputError
from tuner.spec import DEFAULT_NUM_SAMPLES, LIST_SPACES, SearchSpec, config_for


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


def load_datasets(spec: SearchSpec) -> dict:
    """name -> (training Dataset, Evaluator), built once on the driver and shipped via the object store."""
    from models.evaluation import Evaluator
    datasets = {}
    for name in spec.datasets:
        train = load_dataset(name, spec.data_dir, train=True)
        if spec.limit:
            train = train.subset(spec.limit, seed=spec.seed)
        datasets[name] = (train, Evaluator.for_dataset(name, spec.data_dir, n_samples=spec.eval_samples))
    return datasets


def trial_resources(spec: SearchSpec, cluster_may_grow: bool = False) -> dict:
    """{"cpu", "gpu"} of every trial; the GPU share defaults to 0.25 when the cluster has GPUs."""
    import ray
    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    gpus = spec.gpus_per_trial if spec.gpus_per_trial is not None else (0.25 if cluster_gpus else 0)
    if gpus > cluster_gpus and not cluster_may_grow:  # a local Ray never grows: the trials would wait forever
        raise UserInputError(f"gpus-per-trial: {gpus} requested but the cluster has {cluster_gpus:g} GPU(s)")
    if gpus > cluster_gpus:
        print(f"gpus-per-trial: {gpus:g} requested and the cluster has {cluster_gpus:g} GPU(s) now; trials wait "
              "for the autoscaler to add GPU nodes", file=sys.stderr)
    return {"cpu": spec.cpus_per_trial, "gpu": gpus}


def trial_settings(spec: SearchSpec):
    from tuner.trainable import TrialSettings
    return TrialSettings(spec.eval_samples, spec.collapse_patience, spec.steps_per_report, spec.warmup,
                         searcher_epoch=spec.grace_period if spec.early_stop else spec.epochs)


def trial_configs(spec: SearchSpec) -> list[dict]:
    """A list space's trials: its configs with the pinned values and the run's constants."""
    from search_spaces import seed_grid
    if spec.space == "seed-grid":
        models = ("gan", "vae") if spec.model == "both" else (spec.model,)
        points = seed_grid(spec.datasets, models, spec.epochs)
    else:
        points = spec.trial_configs
    base = {"model": spec.trainer or spec.model, "dataset": spec.datasets[0]}
    return [{**base, **point, **spec.fixed, "epochs": spec.epochs, "seed": spec.seed} for point in points]


def search_function(spec: SearchSpec):
    """The define-by-run function TPE samples: the space, with the pinned values and the constants."""
    from search_spaces import SPACES
    from tuner.searchers import pinned_space
    from tuner.trainers import load_reference

    space = SPACES.get((spec.space, spec.model)) or load_reference("space", spec.space)
    base = {} if spec.model == "both" else {"model": spec.model}
    constants = {"dataset": spec.datasets[0], "epochs": spec.epochs, "seed": spec.seed}
    if spec.trainer:
        constants["model"] = spec.trainer
    return partial(pinned_space, space, base, spec.fixed, constants)


def start_points(spec: SearchSpec) -> list[dict]:
    """SearchSpec.start_from as TPE's first points: a built-in model's point completed with its
    config's defaults (so a recipe is the whole recipe), a plug-in's as given; "model" is kept only
    where the space searches it (--model both)."""
    points = []
    for point in spec.start_from:
        model = point.get("model", spec.trainer or spec.model)
        full = point if spec.trainer else {**config_for(model, point, "start-from").to_dict(), "model": model}
        drop = ("epochs", "seed") + (() if spec.model == "both" and not spec.trainer else ("model",))
        points.append({k: v for k, v in full.items() if k not in drop})
    return points


def stopper(spec: SearchSpec):
    """The collapse stopper (with early stopping) and the trial-epoch budget (when set), as one."""
    from ray.tune.stopper import CombinedStopper

    from tuner.budget import TrialEpochBudget
    from tuner.objective import CollapseStopper
    stoppers = [CollapseStopper()] if spec.early_stop else []
    if spec.budget_trial_epochs is not None:
        # first: CombinedStopper asks its stoppers in order and stops asking at the first True, and
        # the budget (which never stops one trial) must count every report, a collapsed trial's too
        stoppers.insert(0, TrialEpochBudget(spec.budget_trial_epochs, spec.experiment_path))
    return CombinedStopper(*stoppers) if len(stoppers) > 1 else (stoppers[0] if stoppers else None)


def build_tuner(spec: SearchSpec, datasets: dict | None = None, trainable=None, *, resume: bool = False,
                cluster_may_grow: bool = False):
    """The Tuner of `spec` on the connected Ray. `datasets` (name -> (Dataset, Evaluator) or an
    ObjectRef of it) defaults to `load_datasets(spec)` put in the object store; `trainable` (with
    train_trial's signature) defaults to train_trial. A new experiment writes its SearchSpec beside
    Ray's state; `resume` restores the experiment at spec.experiment_path instead."""
    import ray
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    from tuner.scheduler import ASHA_VARIANTS
    from tuner.searchers import FixedConfigs, tpe_searcher
    from tuner.trainable import train_trial

    if datasets is None:  # a trial fetches its pair itself, once it has checked its node can run it
        datasets = {name: ray.put(pair) for name, pair in load_datasets(spec).items()}
    trainable = tune.with_resources(
        tune.with_parameters(trainable or train_trial, datasets=datasets, settings=trial_settings(spec)),
        trial_resources(spec, cluster_may_grow))
    if resume:
        if not tune.Tuner.can_restore(spec.experiment_path):
            raise UserInputError(f"resume: no experiment to resume at {spec.experiment_path}")
        return tune.Tuner.restore(spec.experiment_path, trainable=trainable, resume_errored=True)

    if spec.space in LIST_SPACES:
        configs = trial_configs(spec)
        searcher, num_samples = FixedConfigs(configs), len(configs)
    else:
        searcher = tpe_searcher(search_function(spec), spec.seed, spec.random_trials, start_points(spec))
        num_samples = spec.num_samples or DEFAULT_NUM_SAMPLES
    scheduler = (ASHA_VARIANTS[spec.asha](time_attr="epoch", max_t=spec.epochs, grace_period=spec.grace_period,
                                         reduction_factor=spec.reduction_factor)
                 if spec.early_stop else FIFOScheduler())
    run_config = tune.RunConfig(
        name=spec.name, storage_path=spec.storage_path, stop=stopper(spec),
        # The latest N, not the best N by objective: Ray forces an experiment snapshot every N
        # checkpoints of a trial, so the checkpoint the last snapshot names survives only if no
        # checkpoint is deleted before N newer ones exist. Kept by objective, it can be deleted one
        # epoch later, and --resume after a driver crash then fails that trial.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.keep_checkpoints),
        failure_config=tune.FailureConfig(max_failures=spec.max_failures))
    tune_config = tune.TuneConfig(metric="objective", mode="min", search_alg=searcher, scheduler=scheduler,
                                  num_samples=num_samples, max_concurrent_trials=spec.max_concurrent)
    spec.save()
    return tune.Tuner(trainable, tune_config=tune_config, run_config=run_config)


def tune(spec: SearchSpec, resume: bool = False):
    """Run the experiment `spec` describes and return Ray's ResultGrid: joins RAY_ADDRESS or a
    running cluster, else starts a local Ray (kept running afterwards); loads the data; fits.
    With `resume`, finishes the interrupted experiment of that name with its own saved spec."""
    import ray
    check_storage(spec.storage_path)
    if resume:
        spec = spec.resumed()
    cluster_may_grow = connect_ray() if not ray.is_initialized() else False
    return build_tuner(spec, resume=resume, cluster_may_grow=cluster_may_grow).fit()
