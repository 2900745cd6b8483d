"""The ranking rules, in one place so the report, the CLI summary, the live progress table and
the docs agree.

Quality ranking (`rank`): trials are first grouped by health, in this order: healthy,
immature (flagged collapsed at its last evaluation, but inside the collapse warm-up: a young GAN
draws few classes and looks collapsed, so the verdict says "not trained enough", not "collapsed"),
collapsed (ended by the collapse stopper, or flagged collapsed at its last evaluation after the
warm-up), memorized (ended by the stopper for copying training images, or judged so at its last
evaluation: good FIDs that must not win), diverged (non-finite losses or images at any report),
error, and trials with no evaluation yet. Within a group, lower best FID first; ties broken by
the fraction of evaluations flagged collapsed, then by the largest epoch-to-epoch FID worsening.

Stability ranking (`stability_rank`): the same health groups; within a group, lower fraction of
evaluations flagged collapsed first, then smaller largest FID worsening, then lower best FID.
"""

import pandas as pd

from tuner.objective import EndReason

HEALTH_ORDER = ("healthy", "immature", "collapsed", "memorized", "diverged", "error", "no evaluation")


def in_warmup_verdict(report) -> bool:
    """A report flagged collapsed inside the warm-up. The trial counts a verdict after the warm-up
    in `collapse_streak` (the stopper's count), so a flagged report with streak 0 is a warm-up
    one. Reports without the streak (none written by this version) count as after the warm-up."""
    streak = report.get("collapse_streak")
    return bool(report.get("collapsed", False)) and streak is not None and not pd.isna(streak) and streak == 0


def report_health(report) -> str:
    """The health label of one report (a dict or a row of the history): what the live progress
    table shows for a running trial."""
    if report.get("diverged", False):
        return "diverged"
    if report.get("memorized", False):
        return "memorized"  # as in `health`: copying training images is no sign of youth
    if not report.get("collapsed", False):
        return "healthy"
    return "immature" if in_warmup_verdict(report) else "collapsed"


def health(row: pd.Series) -> str:
    if row["end_reason"] == EndReason.ERROR:
        return "error"
    if pd.isna(row.get("best_fid")) and not row.get("diverged", False):
        return "no evaluation"
    if row.get("diverged", False) or row["end_reason"] == EndReason.DIVERGED:
        return "diverged"
    if row["end_reason"] == EndReason.MEMORIZED or row.get("memorized_at_end", False):
        return "memorized"  # before collapsed: a memorising evaluation is flagged collapsed as well
    if row["end_reason"] == EndReason.COLLAPSE:
        return "collapsed"
    if row.get("collapsed_at_end", False):
        return "immature" if row.get("immature_at_end", False) else "collapsed"
    return "healthy"


def no_healthy_warning(trials: pd.DataFrame) -> str | None:
    """One sentence for the end of a search and the top of its report when no trial is healthy
    (the best trial's samples are then not worth using), saying what to try; None otherwise."""
    if trials.empty or "health" not in trials or (trials["health"] == "healthy").any():
        return None
    counts = ", ".join(f"{count} {label}" for label, count in trials["health"].value_counts().items())
    return (f"Warning: no trial is healthy ({counts}), so even the best one's samples are likely poor; try "
            "more epochs (--epochs) and more training images (--limit), or more trials (--num-samples).")


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
