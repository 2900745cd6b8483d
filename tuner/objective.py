"""The one number ASHA and the searcher minimise, and the rule that ends collapsed trials.

How they work together: every report carries `objective`. A healthy trial's objective is its
FID. A trial whose detector fires (mode collapse, or memorisation: its samples copy training
images, which FID rewards) reports FID + COLLAPSE_PENALTY, which is worse than any healthy trial,
so at its next ASHA rung it falls in the bottom fraction and is dropped, and the searcher learns
that region is bad. Independently, `CollapseStopper` ends a trial at once when its report says
`end_reason` is "collapse" or "memorized" (the detector fired `collapse_patience` evaluations in
a row after the warm-up; "memorized" when the last of them was memorisation) or "diverged"
(non-finite losses or images), without waiting for a rung.
The warm-up (`collapse_warmup` epochs) exists because a young GAN draws only a few classes and so
looks collapsed: during it the verdict is penalised in `objective` (the ranking and the best
generator file never prefer a flagged report) but never stops the trial, and ASHA compares
`rung_objective` (RUNG_METRIC), which leaves warm-up verdicts out. With the penalty, ASHA's first
rung sorted trials by "flagged at epoch 1 or not", which says little: in bench/quality.py 6 of 6
lab recipes and 9 of 11 searched trials were flagged at epoch 1, and run 1's winner (flagged
there, FID 284) reached 74 at epoch 2 and 33 at epoch 5.
"""

import math
from enum import Enum

from ray import tune

RUNG_METRIC = "rung_objective"  # the metric ASHA and the budget's leader reserve compare
COLLAPSE_PENALTY = 1e4  # added to FID: above any healthy trial's FID in our feature space
DIVERGED_OBJECTIVE = 1e6  # non-finite losses or images: worse than any collapsed trial
# Keys every trial config carries that are run settings, not searched hyperparameters.
NON_HYPERPARAMETER_KEYS = ("model", "dataset", "epochs", "seed")


class EndReason(str, Enum):
    """Why a trial ended. A str Enum: it equals its value, so frames of reported strings compare
    equal to the members. The trial reports the first four itself (`end_reason` in its last
    report); the analysis assigns the others from Ray's record of the trial."""
    COMPLETED = "completed"  # trained every epoch
    COLLAPSE = "collapse"  # the detector fired collapse_patience evaluations in a row after the warm-up
    MEMORIZED = "memorized"  # as COLLAPSE, the last of those evaluations saying the samples copy training images
    DIVERGED = "diverged"  # non-finite losses or images
    ASHA = "asha"  # ended by Ray with no reason of its own: the scheduler stopped it
    BUDGET = "budget"  # running when the search's trial-epoch budget was spent (tuner/budget.py)
    ERROR = "error"  # failed more often than max_failures allows
    RUNNING = "running"  # running, or interrupted with the driver
    PENDING = "pending"  # created, never reported
    MISSING = "missing"  # in Ray's experiment state, but its results are gone

    __str__ = str.__str__  # f"{reason}" is the value, on every Python version


REPORTED_REASONS = (EndReason.COMPLETED, EndReason.COLLAPSE, EndReason.MEMORIZED, EndReason.DIVERGED)
PENALISED_REASONS = (EndReason.COLLAPSE, EndReason.MEMORIZED)  # lose by COLLAPSE_PENALTY
STOPPING_REASONS = (*PENALISED_REASONS, EndReason.DIVERGED)


def hyperparameters(config: dict) -> dict:
    """A trial config without its run settings (NON_HYPERPARAMETER_KEYS)."""
    return {k: v for k, v in config.items() if k not in NON_HYPERPARAMETER_KEYS}


def objective(fid: float, collapsed: bool, diverged: bool) -> float:
    """Lower is better; collapsed (mode collapse or memorisation: the evaluator's `collapsed`
    covers both) and diverged trials always lose to healthy ones."""
    if diverged or not math.isfinite(fid):
        return DIVERGED_OBJECTIVE
    return fid + COLLAPSE_PENALTY if collapsed else fid


def searcher_objective(rung_fid: float, rung_collapsed: bool, reason: str | None) -> float:
    """What TPE learns from a trial: its objective at ASHA's first rung, which every trial reaches,
    made worse if the trial ends collapsed, memorising or diverged.

    Fed each trial's last objective instead, TPE would compare epoch-1 FIDs of stopped trials with
    epoch-10 FIDs of the few ASHA let run, and search around whatever happened to start first.
    `rung_collapsed` is a verdict outside the warm-up only: at the first rung nearly every young
    GAN is flagged, and a penalty on all of them would let a trial stopped as collapsed at epoch 8
    (its FID lower than any epoch-1 FID, and penalised the same) outrank every healthy one.
    """
    return objective(rung_fid, collapsed=rung_collapsed or reason in PENALISED_REASONS,
                     diverged=reason == EndReason.DIVERGED)


def decide_end(diverged: bool, collapse_streak: int, patience: int, finished: bool,
               memorized: bool = False) -> EndReason | None:
    """The trial's own verdict after a report: why it ends now, or None if it goes on (ASHA or the
    budget may still stop it). `collapse_streak` counts flagged evaluations of either kind;
    `memorized` is the latest evaluation's memorisation verdict."""
    if diverged:
        return EndReason.DIVERGED
    if collapse_streak >= patience:
        return EndReason.MEMORIZED if memorized else EndReason.COLLAPSE
    return EndReason.COMPLETED if finished else None


class CollapseStopper(tune.Stopper):
    """Stops a trial whose latest report says it collapsed or memorised (M evaluations in a row)
    or diverged."""

    def __call__(self, trial_id: str, result: dict) -> bool:
        return result.get("end_reason") in STOPPING_REASONS

    def stop_all(self) -> bool:
        return False
