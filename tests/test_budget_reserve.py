"""The end of a trial-epoch budget kept for the best running trial (tuner/budget.py's
reserve_leader), and the budgeted ASHA schedulers that apply it."""

from ray.tune.schedulers import ASHAScheduler

from tuner.budget import reserve_leader
from tuner.scheduler import BUDGETED_ASHA_VARIANTS, RerankingASHA

MAX_T = 5


def reports(**trials) -> dict[str, dict]:
    """name=(epoch, objective) or name=None (started, no report yet)."""
    return {name: ({} if value is None else {"epoch": value[0], "objective": value[1]}) for name, value in trials.items()}


def test_no_reserve_while_the_budget_left_covers_the_leaders_remaining_epochs_and_more():
    latest = reports(done=(5.0, 40.0), a=(3.0, 50.0), b=(1.0, 200.0))  # spent 9
    assert reserve_leader(latest, {"a", "b"}, budget=13, max_t=MAX_T, metric="objective") is None  # left 4 > a's 2 + b's in-flight 1


def test_the_reserve_starts_when_what_is_left_is_what_the_leader_needs():
    latest = reports(done=(5.0, 40.0), a=(3.0, 50.0), b=(1.0, 200.0))
    assert reserve_leader(latest, {"a", "b"}, budget=12, max_t=MAX_T, metric="objective") == "a"  # left 3 = a's 2 + b's 1
    assert reserve_leader(latest, {"a", "b"}, budget=10, max_t=MAX_T, metric="objective") == "a"  # and stays while it is short


def test_the_leader_is_the_lowest_objective_among_running_unfinished_trials():
    latest = reports(stopped=(2.0, 10.0), finished=(5.0, 20.0), slow=(1.0, 300.0), good=(2.0, 60.0), fresh=None)
    running = {"finished", "slow", "good", "fresh"}  # "stopped" (ASHA) is better but gone
    assert reserve_leader(latest, running, budget=10, max_t=MAX_T, metric="objective") == "good"  # at max_t: not kept for


def test_a_trial_with_no_report_yet_is_never_the_leader_but_counts_as_running():
    latest = reports(a=(1.0, 100.0), fresh=None)  # spent 1
    assert reserve_leader(latest, {"a", "fresh"}, budget=6, max_t=MAX_T, metric="objective") == "a"  # left 5 = a's 4 + fresh's 1
    assert reserve_leader(latest, {"a", "fresh"}, budget=7, max_t=MAX_T, metric="objective") is None
    assert reserve_leader(reports(fresh=None), {"fresh"}, budget=1, max_t=MAX_T, metric="objective") is None


def test_budgeted_schedulers_are_the_asha_variants_plus_the_reserve():
    assert issubclass(BUDGETED_ASHA_VARIANTS["reranking"], RerankingASHA)
    scheduler = BUDGETED_ASHA_VARIANTS["ray"](time_attr="epoch", max_t=MAX_T, grace_period=1, reduction_factor=2,
                                              budget=30)
    assert isinstance(scheduler, ASHAScheduler) and scheduler.budget == 30 and scheduler._max_t == MAX_T
