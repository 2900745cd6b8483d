"""End reasons and configs in the analysis frames: a trial stopped by the trial-epoch budget says
`budget`, one whose directory is gone says `missing`, a plug-in trial's config is shown as it ran
(never filled with GANConfig's defaults), and NON_HYPERPARAMETER_KEYS is the one list of keys the
analysis leaves out of the hyperparameters."""

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import ray

from models.errors import UserInputError
from tests.conftest import REPO
from tuner.analysis import load_trials
from tuner.analysis.answers import collapses
from tuner.analysis.frames import effective_config, recorded_end_reason, recorded_spec
from tuner.analysis.importance import varied_hyperparameters
from tuner.build import tune
from tuner.objective import NON_HYPERPARAMETER_KEYS, EndReason, hyperparameters
from tuner.spec import SPEC_FILE, SearchSpec

TRAINER = "examples.tiny_gan:make_trainer"
# every key of these plug-in configs is a GANConfig field too: filled in as a built-in GAN's, the
# trial would show GANConfig's loss, width and learning rates, which it never had
CONFIGS = ({"z_dim": 16, "batch_size": 64}, {"z_dim": 32, "batch_size": 64})


@pytest.fixture(scope="module")
def budget_experiment(tmp_path_factory, data_dir) -> Path:
    """Two tiny plug-in trials of 2 epochs, one at a time, in a search with a budget of 3
    trial-epochs: the first runs to the end, the budget stops the second after its first epoch.
    No early stopping, and a warm-up as long as the run, so nothing else can end either."""
    root = tmp_path_factory.mktemp("reasons")
    spec = SearchSpec(name="budget", storage_path=str(root), space="configs", trainer=TRAINER, trial_configs=CONFIGS,
                      data_dir=str(data_dir), limit=640, eval_samples=200, epochs=2, budget_trial_epochs=3,
                      early_stop=False, max_concurrent=1, collapse_warmup=2)
    before = os.getcwd()
    os.chdir(REPO)  # Ray gives its workers the driver's directory on their path: how they import examples/
    ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, log_to_driver=False)
    try:
        grid = tune(spec)
    finally:
        ray.shutdown()
        os.chdir(before)
    assert len(grid) == 2 and not grid.errors
    return Path(spec.experiment_path)


def by_z_dim(trials: pd.DataFrame) -> dict:
    return {int(row["z_dim"]): row for _, row in trials.iterrows()}


@pytest.mark.slow
def test_a_trial_the_budget_stopped_is_labelled_budget(budget_experiment):
    trials = by_z_dim(load_trials(budget_experiment))
    assert trials[16]["end_reason"] == EndReason.COMPLETED and trials[16]["epochs_run"] == 2
    assert trials[32]["end_reason"] == EndReason.BUDGET and trials[32]["epochs_run"] == 1
    assert pd.notna(trials[32]["best_fid"])  # evaluated before the budget stopped it


@pytest.mark.slow
def test_a_plug_in_trial_config_is_shown_as_it_ran(budget_experiment):
    trials = load_trials(budget_experiment)
    assert not {"loss", "width", "lr_g", "arch"} & set(trials), trials.columns.tolist()
    assert (trials["epochs"] == 2).all() and (trials["model"] == TRAINER).all()
    assert sorted(trials["z_dim"]) == [16, 32] and (trials["batch_size"] == 64).all()


@pytest.mark.slow
def test_a_deleted_trial_directory_is_labelled_missing(budget_experiment, tmp_path):
    copy = tmp_path / "budget"
    shutil.copytree(budget_experiment, copy)
    completed = by_z_dim(load_trials(copy))[16]
    shutil.rmtree(next(copy.glob(f"train_trial_{completed['trial_id']}_*")))
    trials = by_z_dim(load_trials(copy))
    assert trials[16]["end_reason"] == EndReason.MISSING and trials[16]["health"] == "no evaluation"
    assert trials[32]["end_reason"] == EndReason.BUDGET


@pytest.mark.parametrize("record,reason", [
    (dict(status="TERMINATED", reported="collapse", reports=3, stopped_at_report=True, budgeted=True), "COLLAPSE"),
    (dict(status="TERMINATED", reported=None, reports=2, stopped_at_report=True, budgeted=True), "ASHA"),
    (dict(status="TERMINATED", reported=None, reports=1, stopped_at_report=False, budgeted=True), "BUDGET"),
    (dict(status="TERMINATED", reported=None, reports=0, stopped_at_report=False, budgeted=True), "BUDGET"),
    (dict(status="TERMINATED", reported=None, reports=1, stopped_at_report=False, budgeted=False), "ASHA"),
    (dict(status="ERROR", reported=None, reports=1, stopped_at_report=False, budgeted=True), "ERROR"),
    (dict(status="RUNNING", reported=None, reports=1, stopped_at_report=False, budgeted=True), "RUNNING"),
    (dict(status="PENDING", reported=None, reports=0, stopped_at_report=False, budgeted=False), "PENDING"),
])
def test_recorded_end_reason_tells_the_scheduler_from_the_budget(record, reason):
    """Ray marks the report a scheduler or stopper ended a trial on as done; the budget ends the
    search, so the trials it stops (or never starts) have no done report."""
    assert recorded_end_reason(**record, results_kept=True) is EndReason[reason]
    assert recorded_end_reason(**record, results_kept=False) is EndReason.MISSING


def test_effective_config_fills_only_a_built_in_trainer_and_keeps_its_epochs():
    plug_in = {"model": TRAINER, "dataset": "fashion_mnist", **CONFIGS[0], "epochs": 3, "seed": 1}
    assert effective_config(plug_in) == plug_in
    gan = effective_config({"model": "gan", "dataset": "fashion_mnist", "loss": "hinge", "epochs": 7, "seed": 3})
    assert gan["epochs"] == 7 and gan["seed"] == 3 and gan["loss"] == "hinge"
    assert {"width", "z_dim", "lr_g", "lr_d"} <= set(gan)


def test_recorded_spec_reads_the_json_and_names_a_broken_file(tmp_path):
    assert recorded_spec(tmp_path) == {}
    (tmp_path / SPEC_FILE).write_text('{"budget_trial_epochs": 3, "trainer": "no_such_module:factory"}')
    assert recorded_spec(tmp_path)["budget_trial_epochs"] == 3  # read, not validated: nothing is imported
    (tmp_path / SPEC_FILE).write_text('{"budget_trial_epochs": ')
    with pytest.raises(UserInputError, match=SPEC_FILE):
        recorded_spec(tmp_path)


def test_importance_leaves_out_exactly_the_non_hyperparameter_keys():
    keys = [*NON_HYPERPARAMETER_KEYS, "lr", "hidden"]
    frame = pd.DataFrame({key: [f"{key}-a", f"{key}-b"] for key in keys})  # every key takes two values
    assert varied_hyperparameters(frame, keys) == ["lr", "hidden"]
    assert list(hyperparameters(dict.fromkeys(keys, 1))) == ["lr", "hidden"]


def test_collapse_answers_name_hyperparameters_only():
    run = {"model": TRAINER, "dataset": "fashion_mnist", "epochs": 2, "seed": 0}
    trials = pd.DataFrame([
        {"trial_id": "flagged", **run, "lr": 0.01, "health": "collapsed", "first_collapse_epoch": 2.0,
         "collapse_reasons": "few modes", "collapsed_fraction": 0.5, "end_reason": EndReason.COLLAPSE},
        {"trial_id": "fine", **run, "lr": 0.001, "health": "healthy", "first_collapse_epoch": None,
         "collapse_reasons": None, "collapsed_fraction": 0.0, "end_reason": EndReason.COMPLETED},
    ])
    lines = collapses(trials, [*run, "lr"])
    assert lines[0] == ("Trial flagged (lr=0.01) collapsed: first flagged at epoch 2 (few modes); flagged in 50% "
                        "of its evaluations; ended as collapse.")
