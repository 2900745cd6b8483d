"""Analysis of a finished, running or interrupted experiment: pandas frames, ranking, report.

    from tuner.analysis import load_trials, load_history
    trials = load_trials("runs/my-search")     # one row per trial, ranked
    history = load_history("runs/my-search")   # one row per trial per report
"""

from tuner.analysis.frames import load_history, load_trials
from tuner.analysis.ranking import rank_trials
from tuner.analysis.report import write_report

__all__ = ["load_history", "load_trials", "rank_trials", "write_report"]
