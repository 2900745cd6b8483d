"""ASHA that keeps ranking a trial after it passes a rung, not only when it arrives there.

Ray's ASHA decides once, when a trial reaches a rung: it goes on if it is in the top
1/reduction_factor of the results recorded there so far. The first trial to reach a rung has
nothing to be compared with, so it always goes on, and with few trials at a time those first
trials are often random picks with poor FIDs: in bench/search_efficiency.py a trial at FID 1047
after one epoch ran to epoch 6 because it reported a few seconds before the others. Here a
running trial is checked again at every report, against everyone recorded at the highest rung it
passed that now holds at least reduction_factor results, and stopped once it has fallen out of
that rung's top 1/reduction_factor (with its latest result when that rung is below the one it has
reached). The cutoff is Ray's own (the bracket's `cutoff`).

This reads ASHAScheduler's private bookkeeping (`_trial_info`, each bracket's `_rungs`) as Ray 2.60
has it; tests/test_scheduler.py fails if a Ray upgrade changes it.
"""

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from tuner.budget import LeaderReserve


def outranked(rungs: list[tuple[float, dict]], trial_id: str, reduction_factor: float, cutoff,
              latest: float | None = None) -> bool:
    """Whether `trial_id` has fallen below `cutoff(recorded)` at the highest rung it was recorded
    at that holds at least `reduction_factor` results. `rungs` are Ray's (milestone, {trial_id:
    reward}) pairs, rewards higher-is-better; a trial alone at every rung it passed is not outranked.
    When that rung is below the highest one the trial reached (where it has too little company to
    be ranked), its `latest` reward is what is compared: a trial that has since improved past the
    lower rung's cutoff is not stopped for its own past (bench/quality.py, seed 1: the two start
    points led rung 2, and the one behind at rung 1 was stopped at its epoch-2 report, its FID
    then the best of any trial)."""
    passed = [recorded for _, recorded in sorted(rungs, key=lambda rung: rung[0], reverse=True)
              if trial_id in recorded]
    for depth, recorded in enumerate(passed):
        if len(recorded) >= reduction_factor:
            value = recorded[trial_id] if depth == 0 or latest is None else latest
            return value < cutoff(recorded)
    return False


class RerankingASHA(ASHAScheduler):
    """ASHAScheduler plus `outranked` at every report of a trial it would let go on."""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        bracket = self._trial_info.get(trial.trial_id)
        if action == TrialScheduler.CONTINUE and bracket is not None:
            latest = self._metric_op * result[self._metric]  # Ray's reward: higher is better
            if outranked(bracket._rungs, trial.trial_id, bracket.rf, bracket.cutoff, latest):
                self._num_stopped += 1
                return TrialScheduler.STOP
        return action


class BudgetedRerankingASHA(LeaderReserve, RerankingASHA):
    """RerankingASHA that keeps the end of a trial-epoch budget for its best trial (tuner/budget.py)."""


class BudgetedASHA(LeaderReserve, ASHAScheduler):
    """Ray's ASHAScheduler that keeps the end of a trial-epoch budget for its best trial."""


ASHA_VARIANTS = {"reranking": RerankingASHA, "ray": ASHAScheduler}  # SearchSpec.asha -> scheduler class
BUDGETED_ASHA_VARIANTS = {"reranking": BudgetedRerankingASHA, "ray": BudgetedASHA}  # with --budget-trial-epochs
