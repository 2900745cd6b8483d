"""Make an experiment's snapshot resumable when it names a checkpoint that is gone.

Ray prunes a trial's old checkpoints the moment it registers a new one (`--keep-checkpoints`),
but writes the experiment snapshot that names the new one a step later and copies it to storage
in the background. A driver killed in between leaves a snapshot on storage that names a deleted
checkpoint, and `Tuner.restore` then fails that trial ("does not exist on storage anymore").
The more loaded the driver's machine, the wider that moment. Before restoring, `repoint_trials`
points every such unfinished trial at the newest checkpoint its directory still holds whose report
is on the trial's record (else at the newest one), so the record keeps every epoch where it can.

This reads and rewrites Ray's own snapshot with Ray's own classes (private in 2.60, which
pyproject pins); tests/test_reliability.py checks it on a real killed driver.
"""

import io
import json
from pathlib import PurePosixPath

CHECKPOINT_PREFIX = "checkpoint_"


def unfinished_trials(experiment_path: str):
    """(filesystem, snapshot path, snapshot dict, [(index in trial_data, Trial)]) of the newest
    snapshot on storage, for trials that --resume would run again; None without a snapshot."""
    from ray.train._internal.storage import get_fs_and_path
    from ray.tune.execution.experiment_state import _find_newest_experiment_checkpoint
    from ray.tune.experiment.trial import Trial

    filesystem, _ = get_fs_and_path(experiment_path)
    snapshot_path = _find_newest_experiment_checkpoint(experiment_path)
    if snapshot_path is None:
        return None
    with filesystem.open_input_stream(snapshot_path) as stream:
        snapshot = json.loads(stream.read())
    trials = []
    for index, (trial_state, run_metadata) in enumerate(snapshot["trial_data"]):
        trial = Trial.from_json_state(trial_state, stub=True)
        trial.restore_run_metadata(run_metadata)
        if trial.status != Trial.TERMINATED and trial.run_metadata.checkpoint_manager.latest_checkpoint_result:
            trials.append((index, trial))
    return filesystem, snapshot_path, snapshot, trials


def named_checkpoint(trial) -> str:
    """The checkpoint directory name the snapshot restores `trial` from."""
    return PurePosixPath(trial.run_metadata.checkpoint_manager.latest_checkpoint_result.checkpoint.path).name


def stored_checkpoints(filesystem, trial_path: str) -> list[str]:
    """The trial's checkpoint directory names on storage, oldest first."""
    import pyarrow.fs
    entries = filesystem.get_file_info(pyarrow.fs.FileSelector(trial_path, allow_not_found=True))
    names = [PurePosixPath(e.path).name for e in entries if e.type == pyarrow.fs.FileType.Directory]
    return sorted(name for name in names if name.startswith(CHECKPOINT_PREFIX))


def reports_made(filesystem, checkpoint_path: str) -> int | None:
    """Ray's training_iteration at a checkpoint of train_trial (one report per entry of its
    history); None when its trainer state is missing or cut short (the kill came mid-upload)."""
    import torch
    from tuner.trainable import TRAINER_STATE
    try:
        with filesystem.open_input_stream(f"{checkpoint_path}/{TRAINER_STATE}") as stream:
            state = torch.load(io.BytesIO(stream.read()), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError):
        return None
    return len(state["history"])


def recorded_reports(filesystem, trial_path: str) -> int:
    """The last training_iteration in the trial's result.json on storage (0: none). The driver
    writes that record and syncs it with the snapshot, so it too can end before the checkpoints."""
    try:
        with filesystem.open_input_stream(f"{trial_path}/result.json") as stream:
            lines = stream.read().decode(errors="replace").splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["training_iteration"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0


def resume_point(manager, filesystem, trial_path: str, stored: list[str], recorded: int):
    """The _TrainingResult a trial resumes from, or None: the newest stored checkpoint whose report
    is on the record (epochs after it run again), else the newest complete one (the reports
    between the record's end and it stay missing)."""
    from ray.train import Checkpoint
    from ray.train._internal.session import _TrainingResult

    registered = {PurePosixPath(r.checkpoint.path).name: r for r in manager._checkpoint_results}
    named = manager.latest_checkpoint_result.checkpoint
    resumable = []
    for name in reversed(stored):
        if name in registered:  # the driver registered it, so it was complete
            resumable.append(registered[name])
        elif (iteration := reports_made(filesystem, f"{trial_path}/{name}")) is not None:
            checkpoint = Checkpoint(path=str(PurePosixPath(named.path).parent / name), filesystem=named.filesystem)
            resumable.append(_TrainingResult(checkpoint=checkpoint, metrics={"training_iteration": iteration}))
    on_record = [r for r in resumable if r.metrics.get("training_iteration", 0) <= recorded]
    return (on_record or resumable or [None])[0]


def repoint_trials(experiment_path: str) -> dict[str, tuple[str, str, int, range]]:
    """Point each unfinished trial whose named checkpoint is gone at `resume_point` (a trial with
    no checkpoint left starts again); rewrite the snapshot in place, atomically. Returns
    {trial_id: (named checkpoint, the one it resumes from or "", the last report on its record on
    storage, the reports after that up to the checkpoint: the dead driver's own copy of the record,
    where its machine kept it, may still add them)}."""
    found = unfinished_trials(experiment_path)
    if found is None:
        return {}
    filesystem, snapshot_path, snapshot, trials = found
    experiment_fs_path = str(PurePosixPath(snapshot_path).parent)
    repointed = {}
    for index, trial in trials:
        trial_path = f"{experiment_fs_path}/{trial.storage.trial_dir_name}"
        named, stored = named_checkpoint(trial), stored_checkpoints(filesystem, trial_path)
        if named in stored:
            continue
        manager = trial.run_metadata.checkpoint_manager
        recorded = recorded_reports(filesystem, trial_path)
        latest = resume_point(manager, filesystem, trial_path, stored, recorded)
        kept = [r for r in manager._checkpoint_results if PurePosixPath(r.checkpoint.path).name in stored]
        manager._checkpoint_results = kept if latest is None or latest in kept else [*kept, latest]
        manager._latest_checkpoint_result = latest
        trial.run_metadata.invalidate_cache()
        snapshot["trial_data"][index][1] = trial.run_metadata.get_json_state()
        resumed = PurePosixPath(latest.checkpoint.path).name if latest else ""
        missing = range(recorded + 1, latest.metrics.get("training_iteration", 0) + 1) if latest else range(0)
        repointed[trial.trial_id] = (named, resumed, recorded, missing)
    if repointed:
        partial = f"{snapshot_path}.repointing"
        with filesystem.open_output_stream(partial) as stream:
            stream.write(json.dumps(snapshot).encode())
        filesystem.move(partial, snapshot_path)
    return repointed
