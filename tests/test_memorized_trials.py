"""A memorising trial loses like a collapsed one: the verdict, the objective penalty, the stopper,
its own end reason and its own health label."""

import pandas as pd

from models.evaluation import detect_collapse
from models.evaluation.collapse import MEMORIZED_SHARE_MAX
from tuner.analysis.ranking import HEALTH_ORDER, health, rank_trials
from tuner.objective import (COLLAPSE_PENALTY, REPORTED_REASONS, CollapseStopper, EndReason, decide_end,
                             objective, searcher_objective)

HEALTHY_SIGNALS = dict(coverage_fraction=1.0, entropy=1.0, kl=0.0, diversity=1.0)


def test_copying_training_images_is_memorized_and_collapsed():
    copying = detect_collapse(**HEALTHY_SIGNALS, memorized_share=0.9)
    assert copying["memorized"] and copying["collapsed"] and not copying["diverged"]
    assert copying["collapse_score"] == 1.0 and copying["reasons"] == ["90% of samples copy training images (> 10%)"]


def test_a_memorized_share_at_its_threshold_is_not_memorisation():
    at_threshold = detect_collapse(**HEALTHY_SIGNALS, memorized_share=MEMORIZED_SHARE_MAX)
    assert not at_threshold["memorized"] and not at_threshold["collapsed"] and at_threshold["collapse_score"] == 0.5


def test_mode_collapse_alone_is_not_memorisation():
    collapsed = detect_collapse(**HEALTHY_SIGNALS, recall=0.0, duplicate_share=1.0)
    assert collapsed["collapsed"] and not collapsed["memorized"] and len(collapsed["reasons"]) == 2


def test_a_memorising_trial_ends_with_its_own_reason_and_is_stopped():
    assert decide_end(False, 2, 2, False, memorized=True) == EndReason.MEMORIZED
    assert decide_end(False, 1, 2, False, memorized=True) is None  # patience, as for collapse
    assert decide_end(True, 2, 2, False, memorized=True) == EndReason.DIVERGED
    assert EndReason.MEMORIZED in REPORTED_REASONS
    assert CollapseStopper()("t", {"end_reason": "memorized"})


def test_a_memorising_trial_loses_like_a_collapsed_one():
    # the evaluator's `collapsed` is True for memorisation, so the report's objective carries the penalty
    assert objective(1.7, collapsed=True, diverged=False) == 1.7 + COLLAPSE_PENALTY
    assert searcher_objective(1.7, rung_collapsed=False, reason="memorized") == 1.7 + COLLAPSE_PENALTY
    assert searcher_objective(1.7, rung_collapsed=False, reason="memorized") > objective(
        COLLAPSE_PENALTY * 0.99, collapsed=False, diverged=False)


def test_memorized_is_its_own_health_below_healthy_and_collapsed():
    base = {"best_fid": 2.0, "diverged": False, "collapsed_at_end": False, "memorized_at_end": False,
            "collapsed_fraction": 0.5, "fid_worsening": 0.0}
    trials = pd.DataFrame([
        {**base, "trial_id": "copier", "end_reason": EndReason.MEMORIZED, "collapsed_at_end": True},
        {**base, "trial_id": "copier at its end", "end_reason": EndReason.COMPLETED, "memorized_at_end": True,
         "collapsed_at_end": True},
        {**base, "trial_id": "collapsed", "end_reason": EndReason.COLLAPSE, "best_fid": 90.0},
        {**base, "trial_id": "healthy", "end_reason": EndReason.COMPLETED, "best_fid": 40.0, "collapsed_fraction": 0.0},
    ])
    assert [health(row) for _, row in trials.iterrows()] == ["memorized", "memorized", "collapsed", "healthy"]
    assert HEALTH_ORDER.index("collapsed") < HEALTH_ORDER.index("memorized") < HEALTH_ORDER.index("diverged")
    assert rank_trials(trials)["trial_id"].tolist() == ["healthy", "collapsed", "copier", "copier at its end"]
