"""The live progress table of a search: each trial's epoch, FID, health and end reason, sorted by
the objective ASHA compares (`rung_objective`: the FID, plus the collapse penalty for a verdict
after the warm-up), best first.

Ray 2.60's default output engine ignores a RunConfig's progress reporter (with a warning) and
shows the first four metrics a trial reports (d_loss, g_loss, d_real, d_fake here), so this
module selects Ray's other engine, which shows it (RAY_AIR_NEW_OUTPUT=0), unless the environment
already names one. Not Ray's CLIReporter: it sorts only finished trials, fails on a finished
trial that never reported (a budget stops pending ones), and shows reported values only, where
the health label is worked out from several.
"""

import math
import os
import time

import pandas as pd
from ray.tune import ProgressReporter

from tuner.analysis.ranking import report_health
from tuner.objective import RUNG_METRIC

# Set on import, so that a search resumed from its pickled RunConfig (which imports this module)
# shows the table too.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
MAX_ROWS = 20  # while running; the final table has every trial


def trial_line(trial) -> dict:
    """One trial's row: its latest report, the health of that report, and why it ended."""
    report = trial.last_result or {}
    reported = "fid" in report
    if trial.status == "ERROR":
        health, ended = "error", "error"
    else:
        health = report_health(report) if reported else ""
        ended = report.get("end_reason") or ("stopped" if trial.status == "TERMINATED" else "")
    return {"trial": trial.trial_id, "status": trial.status, "epoch": report.get("epoch", math.nan),
            "fid": report.get("fid", math.nan), "health": health, "end_reason": ended,
            RUNG_METRIC: report.get(RUNG_METRIC, math.nan)}


def progress_table(trials, max_rows: int | None = None) -> str:
    """The trials as a text table sorted by RUNG_METRIC (trials with no report last), at most
    `max_rows` rows."""
    if not trials:
        return "no trial yet"
    frame = pd.DataFrame([trial_line(t) for t in trials])
    frame = frame.sort_values([RUNG_METRIC, "trial"], na_position="last", kind="stable")
    shown = frame if max_rows is None else frame.head(max_rows)
    text = shown.to_string(index=False, na_rep="", float_format=lambda v: f"{v:.4g}")
    hidden = len(frame) - len(shown)
    return text + (f"\n... and {hidden} more (the final table shows every trial)" if hidden else "")


class ProgressTable(ProgressReporter):
    """Prints `progress_table` every `every_s` seconds while the search runs, and once at its end."""

    def __init__(self, every_s: float = 30.0):
        self.every_s, self.shown_at, self.started = every_s, 0.0, time.time()

    def setup(self, start_time: float | None = None, total_samples: int | None = None, **kwargs) -> None:
        self.started = start_time or time.time()

    def should_report(self, trials, done: bool = False) -> bool:
        return done or time.time() - self.shown_at >= self.every_s

    def report(self, trials, done: bool, *sys_info) -> None:
        self.shown_at = time.time()
        counts = pd.Series([t.status for t in trials], dtype=object).value_counts()
        states = ", ".join(f"{n} {status.lower()}" for status, n in counts.items())
        minutes = (self.shown_at - self.started) / 60
        lines = [f"== {'finished' if done else 'running'} for {minutes:.1f} min: {len(trials)} trial(s) ({states}) ==",
                 *(line for line in sys_info if line), progress_table(trials, None if done else MAX_ROWS)]
        print("\n".join(lines), flush=True)
