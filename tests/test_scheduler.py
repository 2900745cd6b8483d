"""RerankingASHA: Ray's ASHA decisions, plus a running trial stopped once later trials outrank it."""

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from tuner.scheduler import RerankingASHA, outranked

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


def make(scheduler_class):
    scheduler = scheduler_class(time_attr="epoch", metric="objective", mode="min", max_t=10, grace_period=1,
                                reduction_factor=2)
    trials = {name: Trial("train_trial", trial_id=name, stub=True) for name in "abc"}
    for trial in trials.values():
        scheduler.on_trial_add(None, trial)
    return scheduler, trials


def report(scheduler, trial, epoch, objective):
    return scheduler.on_trial_result(None, trial, {"epoch": epoch, "objective": objective})


@pytest.mark.parametrize("scheduler_class, a_at_epoch_2", [(ASHAScheduler, CONTINUE), (RerankingASHA, STOP)])
def test_first_trial_at_a_rung_is_stopped_once_a_better_one_arrives(scheduler_class, a_at_epoch_2):
    """The order seen in the search-efficiency benchmark: a poor trial reports epoch 1 first."""
    scheduler, t = make(scheduler_class)
    assert report(scheduler, t["a"], 1, 1047.0) == CONTINUE  # alone at rung 1: nothing to compare with
    assert report(scheduler, t["b"], 1, 473.0) == CONTINUE
    assert report(scheduler, t["a"], 2, 830.0) == a_at_epoch_2
    assert report(scheduler, t["b"], 2, 373.0) == CONTINUE


def test_a_trial_is_judged_at_the_highest_rung_with_company():
    scheduler, t = make(RerankingASHA)
    assert report(scheduler, t["a"], 1, 500.0) == CONTINUE
    assert report(scheduler, t["a"], 2, 300.0) == CONTINUE
    assert report(scheduler, t["b"], 1, 400.0) == CONTINUE
    assert report(scheduler, t["b"], 2, 350.0) == STOP  # Ray's own rule: worse than a at rung 2
    assert report(scheduler, t["a"], 3, 280.0) == CONTINUE  # behind b at rung 1, ahead at rung 2


def test_a_trial_alone_at_a_rung_is_judged_by_its_latest_result_at_the_rung_below():
    scheduler, t = make(RerankingASHA)
    assert report(scheduler, t["a"], 1, 500.0) == CONTINUE
    assert report(scheduler, t["a"], 2, 300.0) == CONTINUE
    assert report(scheduler, t["b"], 1, 400.0) == CONTINUE
    assert report(scheduler, t["c"], 1, 450.0) == CONTINUE  # the median of 500, 400, 450
    assert report(scheduler, t["a"], 3, 280.0) == CONTINUE  # worst of three at rung 1, but 280 beats them all
    assert report(scheduler, t["a"], 4, 470.0) == STOP  # fallen behind the rung-1 median again


def test_the_rung_2_leader_is_not_stopped_for_its_rung_1_result():
    """bench/quality.py, seed 1: the start point behind at epoch 1 (86.4 to 68.7) led epoch 2 with
    54.1; judged on its epoch-1 result it was stopped, and its rung-2 record then stopped the other
    start point too, leaving the search without either."""
    scheduler, t = make(RerankingASHA)
    assert report(scheduler, t["b"], 1, 86.4) == CONTINUE  # first at rung 1
    assert report(scheduler, t["a"], 1, 68.7) == CONTINUE
    assert report(scheduler, t["b"], 2, 54.1) == CONTINUE  # behind at rung 1, alone and best at rung 2
    assert report(scheduler, t["a"], 2, 54.3) == STOP  # Ray's own rule at rung 2: behind b


def test_outranked_uses_the_cutoff_it_is_given():
    rungs = [(4, {}), (2, {"a": -300.0}), (1, {"a": -500.0, "b": -400.0})]
    median = lambda recorded: sorted(recorded.values())[len(recorded) // 2]  # noqa: E731
    assert outranked(rungs, "a", 2, median)
    assert not outranked(rungs, "b", 2, median)
    assert not outranked(rungs, "a", 3, median)  # no rung holds three results
    assert not outranked(rungs, "c", 2, median)  # never recorded
    assert not outranked(rungs, "a", 2, median, latest=-350.0)  # has since passed b's rung-1 result
