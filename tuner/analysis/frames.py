"""pandas frames over what Ray Tune wrote: one row per trial, and one row per trial per report.

Nothing in an experiment directory is unpickled. Experiments are copied back from cloud storage or
handed over by others, and Ray's own reader (`ExperimentAnalysis`) unpickles parts of
experiment_state-*.json, so a planted payload would run on the reading machine. This module reads
JSON only: the newest experiment_state-*.json with plain `json` (each trial's id, status, config,
directory and failure count; the pickled values Ray embeds are left as they are, except the trial's
resource bundle, which is decoded from the pickle's opcodes without executing any), each trial's
result.json, the error.txt Ray writes for a failed trial, and the experiment's search-spec.json.
Ray's pickles (tuner.pkl, params.pkl, searcher state, error.pkl) are never opened. The report's
best-model section loads best_generator.pt with torch's weights_only loader, which builds tensors
and plain containers only. Works on finished, running, interrupted and copied-back experiments.
"""

import json
import math
import pickletools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.config import GANConfig, VAEConfig
from models.errors import UserInputError
from tuner.analysis.ranking import in_warmup_verdict, rank_trials
from tuner.objective import REPORTED_REASONS, EndReason
from tuner.spec import SPEC_FILE, spec_file
from tuner.trainers import TRAINERS, builtin_config

EXPERIMENT_STATE = "experiment_state-*.json"
RAY_COLUMNS = ("checkpoint_dir_name", "should_checkpoint", "done", "date", "time_since_restore",
               "iterations_since_restore", "experiment_tag")  # Ray's bookkeeping, not trial results
NUMBER_OPCODES = ("BINFLOAT", "FLOAT", "BININT", "BININT1", "BININT2", "INT", "LONG", "LONG1")


def absolute(path) -> str:
    """A local path made absolute (Ray and pyarrow read a relative one as a URI with no scheme), `~`
    expanded as SearchSpec does for --storage-path; a URI as it is."""
    path = str(path)
    return path if "://" in path else str(Path(path).expanduser().resolve())


@dataclass
class TrialRecord:
    """One trial as Ray's experiment state records it."""
    trial_id: str
    config: dict
    status: str  # Ray's: PENDING, RUNNING, PAUSED, TERMINATED or ERROR
    path: str  # the trial directory: a local path, or a URI
    location: str  # the same on the experiment's pyarrow filesystem
    reported: bool  # Ray recorded at least one report
    num_failures: int
    resources: dict  # the trial's resource bundle, e.g. {"CPU": 1.0, "GPU": 0.5}


@dataclass
class Experiment:
    """An experiment directory read as JSON: its trials, their result rows and what could not be read."""
    path: str
    filesystem: object  # pyarrow.fs.FileSystem
    trials: list
    rows: dict  # trial_id -> DataFrame of its result.json lines
    unreadable_lines: dict  # trial_id -> lines of its result.json that are not a JSON object


def read_text(filesystem, location: str) -> str | None:
    """A file's text on a pyarrow filesystem; None when it is not there."""
    import pyarrow.fs
    if filesystem.get_file_info(location).type != pyarrow.fs.FileType.File:
        return None
    with filesystem.open_input_stream(location) as stream:
        return stream.read().decode(errors="replace")


def without_pickles(value):
    """A JSON value with the pickled values Ray embeds ({"_type": ..., "value": HEX}) left unread."""
    if isinstance(value, dict):
        if set(value) == {"_type", "value"}:
            return f"<{value['_type']}, not unpickled>"
        return {key: without_pickles(item) for key, item in value.items()}
    return [without_pickles(item) for item in value] if isinstance(value, list) else value


def first_bundle(pickled_hex) -> dict:
    """The first resource bundle ({"CPU": 1.0, "GPU": 0.5}) of the PlacementGroupFactory Ray keeps
    pickled in its state, read from the pickle's opcodes: `pickletools.genops` decodes them without
    running anything, where unpickling would run whatever the file says. {} when unreadable."""
    bundle, key, inside, dicts = {}, None, False, 0
    try:
        for opcode, arg, _ in pickletools.genops(bytes.fromhex(pickled_hex)):
            if not inside:
                inside = arg == "_bundles"
                continue
            dicts += opcode.name == "EMPTY_DICT"
            if opcode.name in ("APPEND", "APPENDS") or dicts > 1:  # the first bundle is complete
                break
            if isinstance(arg, str):
                key = arg
            elif opcode.name in NUMBER_OPCODES and key is not None:
                bundle[key], key = float(arg), None
    except (ValueError, TypeError):  # not hex, not a pickle
        return {}
    return bundle


def trial_record(state: dict, metadata: dict, experiment: str, root: str) -> TrialRecord:
    relative = state["relative_logdir"]
    return TrialRecord(
        trial_id=state["trial_id"], config=without_pickles(state.get("config") or {}),
        status=state.get("status", "PENDING"), path=f"{experiment.rstrip('/')}/{relative}",
        location=f"{root.rstrip('/')}/{relative}", reported=bool(metadata.get("last_result")),
        num_failures=int(metadata.get("num_failures") or 0),
        resources=first_bundle(state.get("placement_group_factory")))


def read_trials(filesystem, experiment: str, root: str, state_file: str) -> list[TrialRecord]:
    """The trials in Ray's experiment state, read with plain `json` (Ray's reader unpickles)."""
    try:
        state = json.loads(read_text(filesystem, state_file))
        return [trial_record(json.loads(trial), json.loads(metadata), experiment, root)
                for trial, metadata in state["trial_data"]]
    except (TypeError, ValueError, KeyError) as err:
        raise UserInputError(f"experiment_dir: {state_file} is not a Ray Tune experiment state ({err})"
                             .split("\n")[0]) from None


def read_result_rows(filesystem, trial: TrialRecord) -> tuple[pd.DataFrame, int]:
    """The trial's result.json as a frame (nested keys joined with "/", as Ray does), and how many of
    its lines are not a JSON object. Such a line (a write cut short, a disk error) is skipped alone:
    the reports before and after it are good."""
    text = read_text(filesystem, f"{trial.location}/result.json")  # ahead of the state while running
    rows, unreadable = [], 0
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        else:
            unreadable += 1
    return (pd.json_normalize(rows, sep="/") if rows else pd.DataFrame()), unreadable


def open_experiment(path) -> Experiment:
    """An experiment directory read as JSON (see the module docstring), or one clear error saying
    what was expected."""
    import pyarrow.fs

    path = absolute(path)
    expected = "expected a Ray Tune experiment directory (STORAGE_PATH/NAME, as written by tuner/run.py)"
    try:
        filesystem, root = pyarrow.fs.FileSystem.from_uri(path)
        found = filesystem.get_file_info(root).type
    except (OSError, ValueError) as err:
        raise UserInputError(f"experiment_dir: cannot open {path} ({err}); {expected}") from None
    if found != pyarrow.fs.FileType.Directory:
        what = "does not exist" if found == pyarrow.fs.FileType.NotFound else "is not a directory"
        raise UserInputError(f"experiment_dir: {path} {what}; {expected}")
    names = sorted(info.base_name for info in filesystem.get_file_info(pyarrow.fs.FileSelector(root))
                   if Path(info.base_name).match(EXPERIMENT_STATE))
    if not names:
        raise UserInputError(f"experiment_dir: {path} is not a Ray Tune experiment; expected a directory "
                             f"holding {EXPERIMENT_STATE} (STORAGE_PATH/NAME, as written by tuner/run.py)")
    trials = read_trials(filesystem, path, root, f"{root.rstrip('/')}/{names[-1]}")  # the newest, as Ray reads
    rows, unreadable = {}, {}
    for trial in trials:
        rows[trial.trial_id], unreadable[trial.trial_id] = read_result_rows(filesystem, trial)
    return Experiment(path, filesystem, trials, rows, unreadable)


def recorded_spec(path) -> dict:
    """The experiment's SearchSpec as written (search-spec.json), {} for an experiment built without
    one. Plain JSON, not `SearchSpec.from_json`: validating would import a plug-in trainer that the
    machine reading a copied-back experiment may not have."""
    filesystem, file = spec_file(absolute(path))
    text = read_text(filesystem, file)
    if text is None:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserInputError(f"experiment_dir: {SPEC_FILE} in {path} is not valid JSON ({err})") from None


def latest_checkpoint(trial_path) -> Path | None:
    """The newest checkpoint Ray kept for the trial (Ray always keeps the latest)."""
    checkpoints = sorted(Path(trial_path).glob("checkpoint_*"))
    return checkpoints[-1] if checkpoints else None


def result_rows(experiment: Experiment, trial: TrialRecord) -> pd.DataFrame:
    """One trial's result rows in order, Ray's columns included; a report Ray recorded twice
    (replayed after a restore) counts once."""
    frame = experiment.rows.get(trial.trial_id)
    if frame is None or frame.empty or "training_iteration" not in frame:
        return pd.DataFrame()
    frame = frame.drop_duplicates("training_iteration", keep="last").sort_values("training_iteration")
    return frame.reset_index(drop=True)


def trial_history(rows: pd.DataFrame, trial) -> pd.DataFrame:
    """The trial's reports (its `result_rows`) without Ray's bookkeeping and the config."""
    if rows.empty:
        return rows
    frame = rows.drop(columns=[c for c in rows if c.startswith("config/") or c in RAY_COLUMNS + ("trial_id",)])
    frame.insert(0, "trial_id", trial.trial_id)
    frame.insert(1, "model", trial.config.get("model"))
    return frame


def load_history(path) -> pd.DataFrame:
    """One row per trial per report (long format): the trainable's metrics plus Ray's timing columns."""
    return history_frame(open_experiment(path))


def history_frame(experiment: Experiment) -> pd.DataFrame:
    frames = [trial_history(result_rows(experiment, t), t) for t in experiment.trials]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["trial_id", "model"])


def error_message(experiment: Experiment, trial: TrialRecord) -> str | None:
    """The last line of Ray's error.txt for the trial: the exception and its message."""
    text = read_text(experiment.filesystem, f"{trial.location}/error.txt")
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else None


def recorded_end_reason(status: str, reported: str | None, reports: int, stopped_at_report: bool,
                        budgeted: bool, results_kept: bool) -> EndReason:
    """Why a trial ended, from Ray's record of it (EndReason says what each means).

    `reported`: the end_reason of its last report. `stopped_at_report`: Ray marked that report
    done, i.e. a stopper or the scheduler ended the trial on it; the budget instead ends the whole
    search, so the trials it stops are TERMINATED with their last report not done (and those that
    never started with no report). `budgeted`: the search had a trial-epoch budget. `results_kept`:
    the trial's directory is still there, or it never reported (a pending trial has none yet)."""
    if not results_kept:
        return EndReason.MISSING
    if status == "ERROR":
        return EndReason.ERROR
    if reported in REPORTED_REASONS:
        return EndReason(reported)
    if status == "TERMINATED":
        return EndReason.BUDGET if budgeted and not stopped_at_report else EndReason.ASHA
    return EndReason.RUNNING if reports else EndReason.PENDING


def results_kept(experiment: Experiment, trial: TrialRecord) -> bool:
    """False when Ray recorded a report of the trial but its directory is gone (deleted, or not copied back)."""
    import pyarrow.fs

    if not trial.reported:
        return True
    return experiment.filesystem.get_file_info(trial.location).type == pyarrow.fs.FileType.Directory


def _spread_over_last_half(series: pd.Series) -> float:
    """Standard deviation over the last half of the reports (NaN with fewer than 2 values there)."""
    values = series.dropna()
    values = values.iloc[len(values) // 2:]
    return float(values.std(ddof=0)) if len(values) >= 2 else math.nan


def _max_jump(frame: pd.DataFrame, columns) -> float:
    jumps = [frame[c].diff().abs().max() for c in columns if c in frame and len(frame) > 1]
    jumps = [j for j in jumps if pd.notna(j)]
    return float(max(jumps)) if jumps else math.nan


def stability_figures(history: pd.DataFrame) -> dict:
    """Loss spread over the last half of training, largest epoch-to-epoch jumps, collapse fraction."""
    if history.empty:
        return {}
    gan = "d_loss" in history
    loss_columns = ("d_loss", "g_loss") if gan else ("loss",)
    figures = {f"{c}_spread": _spread_over_last_half(history[c]) for c in loss_columns if c in history}
    figures["max_loss_jump"] = _max_jump(history, loss_columns)
    fid = history["fid"] if "fid" in history else pd.Series(dtype=float)
    worsening = fid.diff().max() if len(fid) > 1 else math.nan
    figures["fid_worsening"] = float(max(worsening, 0.0)) if pd.notna(worsening) else math.nan
    collapsed = history["collapsed"].astype(bool) if "collapsed" in history else pd.Series(dtype=bool)
    figures["collapsed_fraction"] = float(collapsed.mean()) if len(collapsed) else math.nan
    if collapsed.any():
        first = history[collapsed].iloc[0]
        figures["first_collapse_epoch"] = float(first["epoch"])
        figures["collapse_reasons"] = first.get("reasons") or None
    return figures


def quality_figures(history: pd.DataFrame) -> dict:
    """Best and final FID/KID, the epoch of the best FID and the floor that goes with it."""
    if history.empty or "fid" not in history:
        return {}
    finite = history[np.isfinite(history["fid"].astype(float))]
    last = history.iloc[-1]
    figures = {"final_fid": float(last["fid"]), "final_kid": float(last.get("kid", math.nan)),
               "final_objective": float(last.get("objective", math.nan)),
               "best_objective": float(history["objective"].min()) if "objective" in history else math.nan}
    if not finite.empty:
        best = finite.loc[finite["fid"].idxmin()]
        figures.update(best_fid=float(best["fid"]), epoch_of_best_fid=float(best["epoch"]),
                       fid_floor=float(best["fid_floor"]), kid_at_best_fid=float(best.get("kid", math.nan)),
                       best_kid=float(finite["kid"].min()) if "kid" in finite else math.nan)
    return figures


def effective_config(config: dict) -> dict:
    """A built-in trainer's trial config with its defaults filled in, through the same
    `builtin_config` and `from_dict` the trainer uses, so a default z_dim shows as the z_dim the
    trial ran with. Loss-specific fields (clip value, gradient-penalty weight, real label) appear
    only for their loss, as `to_dict` gives them. A plug-in's config ("model" is its factory) is
    shown as Ray recorded it: its defaults are its own."""
    model = config.get("model")
    if model not in TRAINERS or "epochs" not in config or "seed" not in config:  # no epochs, seed: an older run
        return dict(config)
    try:
        resolved = (VAEConfig if model == "vae" else GANConfig).from_dict(builtin_config(config)).to_dict()
    except UserInputError:  # a config this version cannot build: show it as Ray recorded it
        return dict(config)
    if model != "vae" and resolved["optimizer"] == "rmsprop":
        resolved = {k: v for k, v in resolved.items() if k not in ("beta1", "beta2")}
    return {**config, **resolved}


def trial_row(experiment: Experiment, trial: TrialRecord, config: dict, budgeted: bool) -> dict:
    rows = result_rows(experiment, trial)
    history = trial_history(rows, trial)
    last = history.iloc[-1] if not history.empty else pd.Series(dtype=object)
    bundle = trial.resources
    error = error_message(experiment, trial)
    reported = last.get("end_reason") if not history.empty else None
    stopped_at_report = bool(rows["done"].iloc[-1]) if "done" in rows else False
    row = {
        "trial_id": trial.trial_id, **config,
        "end_reason": recorded_end_reason(trial.status, reported if isinstance(reported, str) else None,
                                          len(history), stopped_at_report, budgeted, results_kept(experiment, trial)),
        "status": trial.status, "error": error,
        **quality_figures(history), **stability_figures(history),
        "diverged": bool(history["diverged"].astype(bool).any()) if "diverged" in history else False,
        "collapsed_at_end": bool(last.get("collapsed", False)) if not history.empty else False,
        "immature_at_end": in_warmup_verdict(last) if not history.empty else False,  # flagged, but young
        "memorized_at_end": bool(last.get("memorized", False)) if not history.empty else False,
        "epochs_run": float(last.get("epoch", 0.0)) if not history.empty else 0.0,
        "reports": len(history),
        "wall_time_s": float(last.get("time_total_s", math.nan)) if not history.empty else math.nan,
        "train_seconds": float(history["train_seconds"].sum()) if "train_seconds" in history else math.nan,
        "eval_seconds": float(history["eval_seconds"].sum()) if "eval_seconds" in history else math.nan,
        "cpus": float(bundle.get("CPU", 0.0)), "gpus": float(bundle.get("GPU", 0.0)),
        "num_failures": trial.num_failures, "unreadable_lines": experiment.unreadable_lines.get(trial.trial_id, 0),
        "node_ip": last.get("node_ip"), "hostname": last.get("hostname"), "device": last.get("device"),
        "path": trial.path,
    }
    return row


def load_trials(path) -> pd.DataFrame:
    """One row per trial: flattened config, FID/KID figures, stability figures, end reason,
    epochs run, wall time and resources, ranked by `tuner.analysis.ranking.rank_trials`."""
    return trials_frame(open_experiment(path), recorded_spec(path))


def trials_frame(experiment: Experiment, spec: dict) -> pd.DataFrame:
    """The trials of `experiment`; `spec` is the experiment's `recorded_spec`."""
    budgeted = spec.get("budget_trial_epochs") is not None
    configs = [effective_config(t.config) for t in experiment.trials]
    frame = pd.DataFrame([trial_row(experiment, t, c, budgeted) for t, c in zip(experiment.trials, configs)])
    if frame.empty:
        return frame
    config_columns = list(dict.fromkeys(k for config in configs for k in config))
    frame = frame[["trial_id", *config_columns, *(c for c in frame if c not in config_columns and c != "trial_id")]]
    return rank_trials(frame)
