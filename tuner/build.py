"""From a SearchSpec to a Ray Tune experiment: the one place a Tuner is built.

    build_tuner(spec, datasets=None, trainable=None) -> ray.tune.Tuner   (tuner/run.py, bench/)
    tune(spec) -> ray.tune.ResultGrid                                     (notebooks)

`tune` holds a lock beside the experiment while it runs (experiment_lock), and refuses an existing
experiment unless told to resume or to overwrite it: two drivers writing one experiment, or a new
search over an old one, lose results that Ray records nowhere else.
"""

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from models.data import load_dataset
from models.errors import UserInputError
from tuner.resume import repoint_trials
from tuner.spec import DEFAULT_NUM_SAMPLES, LIST_SPACES, SearchSpec, config_for
from tuner.storage_check import check_shared_storage

LOCK_SUFFIX = ".lock"  # STORAGE/NAME.lock, beside the experiment directory NAME


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
    from models.evaluation import evaluator_for
    datasets = {}
    for name in spec.datasets:
        train = load_dataset(name, spec.data_dir, train=True, **spec.data_options)
        if spec.limit:
            train = train.subset(spec.limit, seed=spec.seed)
        datasets[name] = (train, evaluator_for(name, spec.data_dir, n_samples=spec.eval_samples,
                                               **spec.data_options))
    return datasets


def trial_resources(spec: SearchSpec, cluster_may_grow: bool = False) -> dict:
    """{"cpu", "gpu"} of every trial; the GPU share defaults to 0.25 when the cluster has GPUs. More
    than the cluster has is an error on a local Ray, which never grows (the trials would wait
    forever), and a warning on a cluster that an autoscaler may grow."""
    import ray
    cluster = ray.cluster_resources()
    cluster_gpus = cluster.get("GPU", 0)
    gpus = spec.gpus_per_trial if spec.gpus_per_trial is not None else (0.25 if cluster_gpus else 0)
    for flag_name, wanted, kind in (("cpus-per-trial", spec.cpus_per_trial, "CPU"), ("gpus-per-trial", gpus, "GPU")):
        have = cluster.get(kind, 0)
        if wanted > have and not cluster_may_grow:
            raise UserInputError(f"{flag_name}: {wanted} requested but the cluster has {have:g} {kind}(s)")
        if wanted > have:
            print(f"{flag_name}: {wanted:g} requested and the cluster has {have:g} {kind}(s) now; trials wait "
                  f"for the autoscaler to add {kind} nodes", file=sys.stderr)
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
                cluster_may_grow: bool = False, overwrite: bool = False):
    """The Tuner of `spec` on the connected Ray. `datasets` (name -> (Dataset, Evaluator) or an
    ObjectRef of it) defaults to `load_datasets(spec)` put in the object store; `trainable` (with
    train_trial's signature) defaults to train_trial. A new experiment writes its SearchSpec beside
    Ray's state (`overwrite` first deletes whatever is at spec.experiment_path, once every check
    has passed); `resume` restores the experiment at spec.experiment_path instead."""
    import ray
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    from tuner.objective import RUNG_METRIC
    from tuner.progress import ProgressTable
    from tuner.scheduler import ASHA_VARIANTS, BUDGETED_ASHA_VARIANTS
    from tuner.searchers import FixedConfigs, tpe_searcher
    from tuner.tensorboard import SampleGridImages
    from tuner.trainable import train_trial

    resources = trial_resources(spec, cluster_may_grow)  # before the data: a bad request costs nothing
    if datasets is None:  # a trial fetches its pair itself, once it has checked its node can run it
        datasets = {name: ray.put(pair) for name, pair in load_datasets(spec).items()}
    trainable = tune.with_resources(
        tune.with_parameters(trainable or train_trial, datasets=datasets, settings=trial_settings(spec)), resources)
    if resume:
        if not tune.Tuner.can_restore(spec.experiment_path):
            raise UserInputError(f"resume: no experiment to resume at {spec.experiment_path}")
        for trial_id, (named, resumed, recorded, missing) in repoint_trials(spec.experiment_path).items():
            lost = f", so reports {missing.start}-{missing.stop - 1} may be missing from it" if missing else ""
            print(f"resume: trial {trial_id}: the experiment snapshot names {named}, which is gone (Ray prunes "
                  f"checkpoints before its snapshot catches up); it resumes from {resumed or 'its start'}; "
                  f"its record on storage ends at report {recorded}{lost}", file=sys.stderr)
        return tune.Tuner.restore(spec.experiment_path, trainable=trainable, resume_errored=True)

    if spec.space in LIST_SPACES:
        configs = trial_configs(spec)
        searcher, num_samples = FixedConfigs(configs), len(configs)
    else:
        searcher = tpe_searcher(search_function(spec), spec.seed, spec.random_trials, start_points(spec))
        num_samples = spec.num_samples or DEFAULT_NUM_SAMPLES
    asha = dict(time_attr="epoch", max_t=spec.epochs, grace_period=spec.grace_period,
                reduction_factor=spec.reduction_factor)
    if not spec.early_stop:
        scheduler = FIFOScheduler()
    elif spec.budget_trial_epochs is not None:  # the end of the budget is kept for the best trial
        scheduler = BUDGETED_ASHA_VARIANTS[spec.asha](**asha, budget=spec.budget_trial_epochs)
    else:
        scheduler = ASHA_VARIANTS[spec.asha](**asha)
    run_config = tune.RunConfig(
        name=spec.name, storage_path=spec.storage_path, stop=stopper(spec),
        # The latest N, not the best N by objective: Ray forces an experiment snapshot every N
        # checkpoints of a trial, so the checkpoint the last snapshot names survives only if no
        # checkpoint is deleted before N newer ones exist. Kept by objective, it can be deleted one
        # epoch later, and --resume after a driver crash then fails that trial.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.keep_checkpoints),
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        # fid, health and end reason per trial, sorted by RUNG_METRIC; verbose 1: that table and no
        # line per report (Ray's default, 3, prints every report's metrics)
        progress_reporter=ProgressTable(), verbose=1,
        callbacks=[SampleGridImages()])  # each report's samples in TensorBoard, beside Ray's scalars
    tune_config = tune.TuneConfig(metric=RUNG_METRIC, mode="min", search_alg=searcher, scheduler=scheduler,
                                  num_samples=num_samples, max_concurrent_trials=spec.max_concurrent)
    if overwrite:
        delete_experiment(spec.experiment_path)
    spec.save()
    return tune.Tuner(trainable, tune_config=tune_config, run_config=run_config)


def experiment_files(experiment_path: str) -> list:
    """What is stored at an experiment's path (local or a URI); [] when nothing is."""
    import pyarrow.fs
    filesystem, path = pyarrow.fs.FileSystem.from_uri(experiment_path)
    if filesystem.get_file_info(path).type == pyarrow.fs.FileType.File:
        raise UserInputError(f"name: {experiment_path} is a file, not an experiment directory")
    return filesystem.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))


def delete_experiment(experiment_path: str) -> None:
    """--overwrite: remove the experiment directory (local or in a bucket) and everything in it."""
    import pyarrow.fs
    filesystem, path = pyarrow.fs.FileSystem.from_uri(experiment_path)
    if experiment_files(experiment_path):
        filesystem.delete_dir(path)


def process_start(pid: int) -> str | None:
    """When process `pid` started (Linux's /proc/PID/stat), which tells a live driver from a new
    process that reuses a dead driver's pid; None where unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def driver_alive(owner: dict) -> bool:
    """Whether the driver recorded in a lock still runs. One on another host cannot be checked from
    here, so it counts as running."""
    if owner["host"] != socket.gethostname():
        return True
    try:
        os.kill(owner["pid"], 0)
    except (ProcessLookupError, OverflowError):  # no such process (a pid past the system's range neither)
        return False
    except PermissionError:  # another user's process: alive
        pass
    started = process_start(owner["pid"])
    return started is None or owner.get("started") is None or started == owner["started"]


def lock_owner(path: Path) -> dict | None:
    """The driver recorded in a lock file; None when the file cannot be read as one."""
    try:
        owner = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    valid = (isinstance(owner, dict) and isinstance(owner.get("pid"), int) and owner["pid"] > 0
             and isinstance(owner.get("host"), str) and isinstance(owner.get("time"), (int, float)))
    return owner if valid else None


def take_lock(path: Path, me: dict) -> None:
    """Create `path` holding `me`, or refuse while the driver recorded in it runs. A lock whose driver
    is gone (killed, crashed, the machine rebooted) is stale and taken over."""
    for _ in range(2):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = lock_owner(path)
            if owner is None and not path.exists():  # released between the two calls
                continue
            if owner is None:
                raise UserInputError(f"name: {path} holds no readable lock (a driver may be starting that "
                                     "experiment this moment); if no search of it runs, delete the file") from None
            if driver_alive(owner):
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner["time"]))
                raise UserInputError(f"name: experiment {path.name.removesuffix(LOCK_SUFFIX)} in {path.parent} is "
                                     f"in use by another driver (pid {owner['pid']} on {owner['host']}, since "
                                     f"{since}); wait for it to end or pick another --name (if that driver is "
                                     f"gone, delete {path})") from None
            path.unlink(missing_ok=True)  # stale
            continue
        with os.fdopen(descriptor, "w") as file:
            json.dump(me, file)
        return
    raise UserInputError(f"name: {path} was taken by another driver at the same moment; try again")


@contextmanager
def experiment_lock(spec: SearchSpec):
    """Hold STORAGE/NAME.lock (pid, host, start time) while this driver runs experiment NAME, so a
    second driver of the same experiment refuses instead of joining the first's Ray and writing
    over its state. Released on exit; a crashed driver's lock is recognised as stale. An object
    store (s3://...) offers no exclusive create, so URIs are not locked."""
    if "://" in spec.storage_path:
        yield
        return
    path = Path(spec.storage_path) / f"{spec.name}{LOCK_SUFFIX}"
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": process_start(os.getpid()),
          "time": time.time()}
    take_lock(path, me)
    try:
        yield
    finally:
        if lock_owner(path) == me:
            try:
                path.unlink()
            except OSError:  # the storage went away mid-run: the lock is stale from now on
                pass


def tune(spec: SearchSpec, resume: bool = False, overwrite: bool = False):
    """Run the experiment `spec` describes and return Ray's ResultGrid: joins RAY_ADDRESS or a
    running cluster, else starts a local Ray (kept running afterwards); loads the data; fits.
    With `resume`, finishes the interrupted experiment of that name with its own saved spec; an
    existing experiment is otherwise refused, or replaced with `overwrite`."""
    import ray
    check_storage(spec.storage_path)
    if resume and overwrite:
        raise UserInputError("overwrite: cannot be combined with --resume: resume continues the experiment, "
                             "overwrite replaces it")
    with experiment_lock(spec):
        if resume:
            spec = spec.resumed()
        elif experiment_files(spec.experiment_path) and not overwrite:
            raise UserInputError(f"name: {spec.experiment_path} already holds an experiment; pass --resume to "
                                 "continue it, --overwrite to replace it, or a new --name")
        cluster_may_grow = connect_ray() if not ray.is_initialized() else False
        check_shared_storage(spec.storage_path)  # other nodes must see it; a single-node Ray starts no task
        return build_tuner(spec, resume=resume, cluster_may_grow=cluster_may_grow, overwrite=overwrite).fit()
