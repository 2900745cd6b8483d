"""pandas frames over what Ray Tune wrote: one row per trial, and one row per trial per report.

Everything is read through Ray's `ExperimentAnalysis` (the experiment state, each trial's
config, status, failures and result rows), the `error.txt` Ray writes for a failed trial and the
experiment's search-spec.json; there is no bookkeeping of our own to drift from Ray's. Works on
finished, running, interrupted and copied-back experiment directories.
"""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from models.config import GANConfig, VAEConfig
from models.errors import UserInputError
from tuner.objective import REPORTED_REASONS, EndReason
from tuner.spec import SPEC_FILE, spec_file
from tuner.trainers import TRAINERS, builtin_config

EXPERIMENT_STATE = "experiment_state-*.json"
RAY_COLUMNS = ("checkpoint_dir_name", "should_checkpoint", "done", "date", "time_since_restore",
               "iterations_since_restore", "experiment_tag")  # Ray's bookkeeping, not trial results


def absolute(path) -> str:
    """A local path made absolute (Ray and pyarrow read a relative one as a URI with no scheme); a URI as it is."""
    path = str(path)
    return path if "://" in path else str(Path(path).resolve())


def open_experiment(path):
    """Ray's ExperimentAnalysis for an experiment directory, or one clear error saying what was expected."""
    from ray.tune import ExperimentAnalysis

    path = str(path)
    if "://" not in path:
        folder = Path(path)
        if not folder.is_dir():
            raise UserInputError(f"experiment_dir: {path} is not a directory; expected a Ray Tune experiment "
                                 "directory (STORAGE_PATH/NAME, as written by tuner/run.py)")
        if not any(folder.glob(EXPERIMENT_STATE)):
            raise UserInputError(f"experiment_dir: {path} is not a Ray Tune experiment; expected a directory "
                                 f"holding {EXPERIMENT_STATE} (STORAGE_PATH/NAME, as written by tuner/run.py)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Ray warns about metrics missing from trials with no reports
            return ExperimentAnalysis(absolute(path))
    except Exception as err:  # Ray raises several types for an unreadable state
        raise UserInputError(f"experiment_dir: cannot read the Ray Tune experiment at {path} ({err})"
                             .split("\n")[0]) from None


def recorded_spec(path) -> dict:
    """The experiment's SearchSpec as written (search-spec.json), {} for an experiment built without
    one. Plain JSON, not `SearchSpec.from_json`: validating would import a plug-in trainer that the
    machine reading a copied-back experiment may not have."""
    import pyarrow.fs

    filesystem, file = spec_file(absolute(path))
    if filesystem.get_file_info(file).type == pyarrow.fs.FileType.NotFound:
        return {}
    with filesystem.open_input_stream(file) as stream:
        text = stream.read().decode(errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserInputError(f"experiment_dir: {SPEC_FILE} in {path} is not valid JSON ({err})") from None


def latest_checkpoint(trial_path) -> Path | None:
    """The newest checkpoint Ray kept for the trial (Ray always keeps the latest)."""
    checkpoints = sorted(Path(trial_path).glob("checkpoint_*"))
    return checkpoints[-1] if checkpoints else None


def intact_result_rows(trial) -> pd.DataFrame:
    """Ray's result.json up to its first torn line. Ray drops a trial's rows altogether when the file
    ends mid-line (a write cut short, e.g. by a full disk); the rows before it are still good."""
    result = Path(trial.path) / "result.json"
    rows = []
    for line in (result.read_text(errors="replace").splitlines() if result.is_file() else []):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return pd.json_normalize(rows, sep="/") if rows else pd.DataFrame()


def result_rows(analysis, trial) -> pd.DataFrame:
    """One trial's result rows in order, Ray's columns included; a report Ray recorded twice
    (replayed after a restore) counts once."""
    frame = analysis.trial_dataframes.get(trial.trial_id)
    if frame is None or frame.empty:
        frame = intact_result_rows(trial)
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


def history_frame(analysis) -> pd.DataFrame:
    frames = [trial_history(result_rows(analysis, t), t) for t in analysis.trials]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["trial_id", "model"])


def error_message(trial) -> str | None:
    """The last line of Ray's error.txt for the trial: the exception and its message."""
    error_file = Path(trial.path) / "error.txt"
    if not error_file.is_file():
        return None
    lines = [line.strip() for line in error_file.read_text(errors="replace").splitlines() if line.strip()]
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


def results_kept(trial) -> bool:
    """False when Ray recorded a report of the trial but its directory is gone (deleted, or not copied back)."""
    import pyarrow.fs

    if not trial.has_reported_at_least_once:
        return True
    found = trial.storage.storage_filesystem.get_file_info(trial.path)
    return found.type == pyarrow.fs.FileType.Directory


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


def trial_row(analysis, trial, config: dict, budgeted: bool) -> dict:
    rows = result_rows(analysis, trial)
    history = trial_history(rows, trial)
    last = history.iloc[-1] if not history.empty else pd.Series(dtype=object)
    bundle = trial.placement_group_factory.bundles[0] if trial.placement_group_factory else {}
    error = error_message(trial)
    reported = last.get("end_reason") if not history.empty else None
    stopped_at_report = bool(rows["done"].iloc[-1]) if "done" in rows else False
    row = {
        "trial_id": trial.trial_id, **config,
        "end_reason": recorded_end_reason(trial.status, reported if isinstance(reported, str) else None,
                                          len(history), stopped_at_report, budgeted, results_kept(trial)),
        "status": trial.status, "error": error,
        **quality_figures(history), **stability_figures(history),
        "diverged": bool(history["diverged"].astype(bool).any()) if "diverged" in history else False,
        "collapsed_at_end": bool(last.get("collapsed", False)) if not history.empty else False,
        "epochs_run": float(last.get("epoch", 0.0)) if not history.empty else 0.0,
        "reports": len(history),
        "wall_time_s": float(last.get("time_total_s", math.nan)) if not history.empty else math.nan,
        "train_seconds": float(history["train_seconds"].sum()) if "train_seconds" in history else math.nan,
        "eval_seconds": float(history["eval_seconds"].sum()) if "eval_seconds" in history else math.nan,
        "cpus": float(bundle.get("CPU", 0.0)), "gpus": float(bundle.get("GPU", 0.0)),
        "num_failures": trial.run_metadata.num_failures,
        "node_ip": last.get("node_ip"), "hostname": last.get("hostname"), "device": last.get("device"),
        "path": trial.path,
    }
    return row


def load_trials(path) -> pd.DataFrame:
    """One row per trial: flattened config, FID/KID figures, stability figures, end reason,
    epochs run, wall time and resources, ranked by `tuner.analysis.ranking.rank_trials`."""
    return trials_frame(open_experiment(path), recorded_spec(path))


def trials_frame(analysis, spec: dict) -> pd.DataFrame:
    """The trials of `analysis`; `spec` is the experiment's `recorded_spec`."""
    from tuner.analysis.ranking import rank_trials

    budgeted = spec.get("budget_trial_epochs") is not None
    configs = [effective_config(t.config) for t in analysis.trials]
    frame = pd.DataFrame([trial_row(analysis, t, c, budgeted) for t, c in zip(analysis.trials, configs)])
    if frame.empty:
        return frame
    config_columns = list(dict.fromkeys(k for config in configs for k in config))
    frame = frame[["trial_id", *config_columns, *(c for c in frame if c not in config_columns and c != "trial_id")]]
    return rank_trials(frame)
