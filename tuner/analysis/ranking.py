"""The ranking rules, in one place so the report, the CLI summary and the docs agree.

Quality ranking (`rank`): trials are first grouped by health, in this order: healthy,
collapsed (ended by the collapse stopper or flagged collapsed at their last evaluation),
memorized (ended by the stopper for copying training images, or judged so at their last
evaluation: good FIDs that must not win), diverged (non-finite losses or images at any report),
error, and trials with no evaluation yet. Within a group, lower best FID first; ties broken by
the fraction of evaluations flagged collapsed, then by the largest epoch-to-epoch FID worsening.

Stability ranking (`stability_rank`): the same health groups; within a group, lower fraction of
evaluations flagged collapsed first, then smaller largest FID worsening, then lower best FID.
"""

import pandas as pd

from tuner.objective import EndReason

HEALTH_ORDER = ("healthy", "collapsed", "memorized", "diverged", "error", "no evaluation")


def health(row: pd.Series) -> str:
    if row["end_reason"] == EndReason.ERROR:
        return "error"
    if pd.isna(row.get("best_fid")) and not row.get("diverged", False):
        return "no evaluation"
    if row.get("diverged", False) or row["end_reason"] == EndReason.DIVERGED:
        return "diverged"
    if row["end_reason"] == EndReason.MEMORIZED or row.get("memorized_at_end", False):
        return "memorized"  # before collapsed: a memorising evaluation is flagged collapsed as well
    if row["end_reason"] == EndReason.COLLAPSE or row.get("collapsed_at_end", False):
        return "collapsed"
    return "healthy"


def _order(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    """1-based positions of the rows when sorted by keys (NaN last)."""
    ordered = frame.sort_values(keys, na_position="last", kind="stable")
    return pd.Series(range(1, len(frame) + 1), index=ordered.index)


def rank_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Adds `health`, `rank` and `stability_rank`; rows come back in `rank` order."""
    frame = trials.copy()
    for column in ("best_fid", "collapsed_fraction", "fid_worsening"):
        if column not in frame:
            frame[column] = float("nan")
    frame["health"] = frame.apply(health, axis=1)
    frame["_group"] = frame["health"].map(HEALTH_ORDER.index)
    frame["rank"] = _order(frame, ["_group", "best_fid", "collapsed_fraction", "fid_worsening"])
    frame["stability_rank"] = _order(frame, ["_group", "collapsed_fraction", "fid_worsening", "best_fid"])
    return frame.drop(columns="_group").sort_values("rank").reset_index(drop=True)
