"""The ranking rules of tuner/analysis/ranking.py on a frame built so that every tie-break decides
an order: health groups first, then best FID, collapsed fraction and FID worsening (quality), or
collapsed fraction, FID worsening and best FID (stability)."""

import pandas as pd

from tuner.analysis.ranking import HEALTH_ORDER, rank_trials

ROWS = [  # trial_id, end_reason, best_fid, collapsed_fraction, fid_worsening, collapsed_at_end, diverged
    ("h_fid_low", "completed", 40.0, 0.5, 9.0, False, False),
    ("h_tie_frac_low", "completed", 50.0, 0.0, 9.0, False, False),
    ("h_tie_frac_high_worse_low", "completed", 50.0, 0.4, 1.0, False, False),
    ("h_tie_frac_high_worse_high", "completed", 50.0, 0.4, 5.0, False, False),
    ("collapsed_best_fid", "collapse", 10.0, 0.9, 0.0, True, False),
    ("flagged_at_end", "completed", 20.0, 0.2, 0.0, True, False),
    ("diverged", "diverged", 5.0, 0.0, 0.0, False, True),
    ("errored", "error", 1.0, 0.0, 0.0, False, False),
    ("unevaluated", "asha", float("nan"), float("nan"), float("nan"), False, False),
]


def ranked() -> pd.DataFrame:
    columns = ["trial_id", "end_reason", "best_fid", "collapsed_fraction", "fid_worsening", "collapsed_at_end",
               "diverged"]
    return rank_trials(pd.DataFrame(ROWS, columns=columns)).set_index("trial_id")


def order(frame: pd.DataFrame, column: str) -> list[str]:
    return frame.sort_values(column).index.tolist()


def test_health_groups_come_first_whatever_the_fid():
    frame = ranked()
    assert frame["health"].to_dict() == {
        "h_fid_low": "healthy", "h_tie_frac_low": "healthy", "h_tie_frac_high_worse_low": "healthy",
        "h_tie_frac_high_worse_high": "healthy", "collapsed_best_fid": "collapsed", "flagged_at_end": "collapsed",
        "diverged": "diverged", "errored": "error", "unevaluated": "no evaluation"}
    groups = [HEALTH_ORDER.index(h) for h in frame.sort_values("rank")["health"]]
    assert groups == sorted(groups)  # the errored trial's FID 1 does not lift it above any healthy one


def test_quality_rank_breaks_fid_ties_by_collapsed_fraction_then_worsening():
    assert order(ranked(), "rank") == [
        "h_fid_low",  # lowest FID, despite the largest collapsed fraction and worsening
        "h_tie_frac_low",  # FID tie at 50: lower collapsed fraction first
        "h_tie_frac_high_worse_low",  # FID and fraction tie: smaller worsening first
        "h_tie_frac_high_worse_high",
        "collapsed_best_fid", "flagged_at_end",  # within the collapsed group, best FID first (10 < 20)
        "diverged", "errored", "unevaluated"]


def test_stability_rank_puts_fewer_collapsed_reports_and_less_worsening_before_fid():
    assert order(ranked(), "stability_rank") == [
        "h_tie_frac_low",  # no flagged report
        "h_tie_frac_high_worse_low", "h_tie_frac_high_worse_high",  # 0.4 each: smaller worsening first
        "h_fid_low",  # the best FID is the least stable healthy trial
        "flagged_at_end", "collapsed_best_fid",  # 0.2 before 0.9
        "diverged", "errored", "unevaluated"]


def test_fid_breaks_a_stability_tie():
    frame = pd.DataFrame([("a", "completed", 60.0, 0.0, 0.0), ("b", "completed", 30.0, 0.0, 0.0)],
                         columns=["trial_id", "end_reason", "best_fid", "collapsed_fraction", "fid_worsening"])
    assert order(rank_trials(frame).set_index("trial_id"), "stability_rank") == ["b", "a"]
