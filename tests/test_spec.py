"""SearchSpec: presets and flags, validation in one place, JSON and --resume, pinned hyperparameters
that TPE never models, and the trial-epoch budget on a real local Ray through `tune(spec)`."""

import dataclasses
import json

import pytest
import ray
from ray.tune.search.optuna import OptunaSearch

from models.errors import UserInputError
from tuner.budget import TrialEpochBudget
from tuner.build import search_function, tune
from tuner.run import build_parser, spec_from_args
from tuner.spec import SPEC_FILE, SearchSpec, preset


def from_flags(*flags) -> SearchSpec:
    return spec_from_args(build_parser().parse_args(list(flags)))


def test_flags_override_the_preset_and_derived_defaults_follow(tmp_path):
    spec = from_flags("--space", "smoke", "--epochs", "6", "--storage-path", str(tmp_path), "--name", "x")
    assert spec == preset("smoke", epochs=6, storage_path=str(tmp_path), name="x")
    assert (spec.limit, spec.num_samples, spec.eval_samples, spec.epochs) == (2000, 4, 500, 6)
    assert spec.warmup == 2  # a third of the epochs given, not of the preset's
    assert from_flags("--space", "smoke", "--collapse-warmup", "0").warmup == 0
    grid = from_flags("--space", "seed-grid", "--no-early-stop")
    assert grid.datasets == ("mnist", "fashion_mnist") and grid.model == "both" and not grid.early_stop
    assert from_flags("--fixed", "width=64", "arch=dcgan", "real_label=0.9").fixed == {
        "width": 64, "arch": "dcgan", "real_label": 0.9}


@pytest.mark.parametrize("values,message", [
    (dict(epochs=0), "epochs: must be > 0"),
    (dict(budget_trial_epochs=-5), "budget-trial-epochs: must be > 0"),
    (dict(asha="hyperband"), "asha: 'hyperband' is not one of reranking, ray"),
    (dict(datasets=("mnist", "fashion_mnist")), "dataset: an Optuna search takes one dataset"),
    (dict(fixed={"seed": 3}), "fixed: seed: run settings"),
    (dict(fixed={"loss": "l2"}), "fixed: loss: 'l2' is not one of"),
    (dict(space="configs"), "space: 'configs' runs trial_configs"),
    (dict(space="search_spaces.gan:no_space"), "space: module 'search_spaces.gan' has no 'no_space'"),
    (dict(trainer="no_such_package.mod:factory"), "trainer: cannot import 'no_such_package.mod'"),
])
def test_a_bad_value_is_one_error_naming_its_flag(values, message):
    with pytest.raises(UserInputError, match=f"^{message}"):
        SearchSpec(**values)


def test_json_round_trip_and_resume_keeps_the_interrupted_runs_settings(tmp_path, capsys):
    spec = SearchSpec(name="exp", storage_path=str(tmp_path), space="configs", limit=640, seed=3,
                      trial_configs=({"loss": "bce"}, {"loss": "hinge", "z_dim": 32}), fixed={"width": 16},
                      budget_trial_epochs=7.5)
    assert SearchSpec.from_json(spec.to_json()) == spec
    spec.save()
    assert json.loads((tmp_path / "exp" / SPEC_FILE).read_text())["trial_configs"][1] == {"loss": "hinge", "z_dim": 32}
    given = dataclasses.replace(preset("smoke", name="exp", storage_path=str(tmp_path)), limit=999, data_dir="/data")
    resumed = given.resumed()
    assert resumed == dataclasses.replace(spec, data_dir="/data")
    message = capsys.readouterr().err
    assert "resume: using the interrupted run's" in message and "limit" in message and "data-dir" not in message
    with pytest.raises(UserInputError, match="^resume: no search-spec.json"):
        dataclasses.replace(given, name="other").resumed()


def sampled(spec: SearchSpec, n: int = 20):
    searcher = OptunaSearch(space=search_function(spec), metric="objective", mode="min", seed=0)
    searcher.set_search_properties("objective", "min", {})
    configs = [searcher.suggest(f"t{i}") for i in range(n)]
    modelled = {name for trial in searcher._ot_study.trials for name in trial.distributions}
    return configs, modelled


def test_pinned_hyperparameters_are_in_every_config_and_never_modelled():
    configs, modelled = sampled(SearchSpec(fixed={"loss": "hinge", "z_dim": 32}, seed=4))
    for config in configs:
        assert config["loss"] == "hinge" and config["z_dim"] == 32
        assert not {"clip_value", "gp_lambda", "real_label"} & set(config)  # conditional on the pinned loss
        assert (config["model"], config["dataset"], config["epochs"], config["seed"]) == ("gan", "fashion_mnist", 10, 4)
    assert modelled and not {"loss", "z_dim"} & modelled
    assert {"lr_g", "lr_d"} <= modelled


def test_pins_work_for_a_users_space_and_trainer_too():
    spec = SearchSpec(space="examples.tiny_gan:space", trainer="examples.tiny_gan:make_trainer",
                      fixed={"hidden": 128, "ignore_noise": True})
    configs, modelled = sampled(spec, n=5)
    assert all(c["hidden"] == 128 and c["ignore_noise"] is True and c["model"] == spec.trainer for c in configs)
    assert modelled == {"lr", "z_dim", "batch_size"}


def test_budget_counts_each_trials_latest_epoch_once(tmp_path):
    trial = tmp_path / "train_trial_a"
    trial.mkdir()
    (trial / "result.json").write_text('{"trial_id": "a", "epoch": 1.0}\n{"trial_id": "a", "epoch": 2.0}\n{"trial_')
    budget = TrialEpochBudget(5, str(tmp_path))
    assert not budget("b", {"epoch": 1.0}) and budget.spent == 3.0  # a's 2 recorded epochs (a resumed search) + b's
    budget("a", {"epoch": 2.0})  # a replayed report counts once
    budget("b", {"epoch": 1.5})
    assert budget.spent == 3.5 and not budget.stop_all()
    budget("b", {"epoch": 3.0})
    assert budget.spent == 5.0 and budget.stop_all()


def test_a_resumed_search_whose_budget_is_spent_stops_before_any_report(tmp_path):
    """Ray asks stop_all() before a resumed search's first report: the recorded epochs must count."""
    for trial, epochs in (("a", 2), ("b", 2)):
        (tmp_path / f"train_trial_{trial}").mkdir()
        (tmp_path / f"train_trial_{trial}" / "result.json").write_text(
            "".join(f'{{"trial_id": "{trial}", "epoch": {e}.0}}\n' for e in range(1, epochs + 1)))
    assert TrialEpochBudget(4, str(tmp_path)).stop_all()
    assert not TrialEpochBudget(5, str(tmp_path)).stop_all()


@pytest.fixture
def local_ray():
    ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_tune_stops_the_search_at_its_trial_epoch_budget(local_ray, data_dir, tmp_path):
    """Budget 3 at 2 epochs a trial, one trial at a time: the first trial runs to the end, the
    second is stopped after its first epoch, the other two never start."""
    spec = preset("smoke", name="budget", storage_path=str(tmp_path), data_dir=str(data_dir), num_samples=4,
                  epochs=2, limit=640, eval_samples=200, early_stop=False, max_concurrent=1,
                  budget_trial_epochs=3, fixed={"loss": "hinge", "z_dim": 32})
    grid = tune(spec)
    epochs = sorted(result.metrics["epoch"] for result in grid)
    assert epochs == [1.0, 2.0] and len(grid) == 2 and not grid.errors
    assert all(result.config["loss"] == "hinge" and result.config["z_dim"] == 32 for result in grid)
    assert SearchSpec.from_json((tmp_path / "budget" / SPEC_FILE).read_text()) == spec
