"""The one number ASHA and the searcher minimise, and the rule that ends collapsed trials.

How they work together: every report carries `objective`. A healthy trial's objective is its
FID. A trial whose detector fires reports FID + COLLAPSE_PENALTY, which is worse than any
healthy trial, so at its next ASHA rung it falls in the bottom fraction and is dropped, and the
searcher learns that region is bad. Independently, `CollapseStopper` ends a trial at once when
its report says `end_reason` is "collapse" (the detector fired `collapse_patience` evaluations in
a row after the warm-up) or "diverged" (non-finite losses or images), without waiting for a rung.
The warm-up (`collapse_warmup` epochs) exists because a young GAN draws only a few classes and so
looks collapsed: during it the verdict is penalised in the objective but never stops the trial.
"""

import math

from ray import tune

COLLAPSE_PENALTY = 1e4  # added to FID: above any healthy trial's FID in our feature space
DIVERGED_OBJECTIVE = 1e6  # non-finite losses or images: worse than any collapsed trial
STOPPING_REASONS = ("collapse", "diverged")


def objective(fid: float, collapsed: bool, diverged: bool) -> float:
    """Lower is better; collapsed and diverged trials always lose to healthy ones."""
    if diverged or not math.isfinite(fid):
        return DIVERGED_OBJECTIVE
    return fid + COLLAPSE_PENALTY if collapsed else fid


def searcher_objective(rung_fid: float, rung_collapsed: bool, reason: str | None) -> float:
    """What TPE learns from a trial: its objective at ASHA's first rung, which every trial reaches,
    made worse if the trial ends collapsed or diverged.

    Fed each trial's last objective instead, TPE would compare epoch-1 FIDs of stopped trials with
    epoch-10 FIDs of the few ASHA let run, and search around whatever happened to start first.
    `rung_collapsed` is a verdict outside the warm-up only: at the first rung nearly every young
    GAN is flagged, and a penalty on all of them would let a trial stopped as collapsed at epoch 8
    (its FID lower than any epoch-1 FID, and penalised the same) outrank every healthy one.
    """
    return objective(rung_fid, collapsed=rung_collapsed or reason == "collapse", diverged=reason == "diverged")


def end_reason(diverged: bool, collapse_streak: int, patience: int, finished: bool) -> str | None:
    """Why the trial ends after this report, or None if it goes on (ASHA may still stop it)."""
    if diverged:
        return "diverged"
    if collapse_streak >= patience:
        return "collapse"
    return "completed" if finished else None


class CollapseStopper(tune.Stopper):
    """Stops a trial whose latest report says it collapsed (M evaluations in a row) or diverged."""

    def __call__(self, trial_id: str, result: dict) -> bool:
        return result.get("end_reason") in STOPPING_REASONS

    def stop_all(self) -> bool:
        return False
