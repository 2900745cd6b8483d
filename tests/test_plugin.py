"""Your own GAN, no fork: examples/tiny_gan.py (written outside the package) tuned through
`tuner/run.py --trainer ... --space ...` on a real local Ray, evaluated, stopped as collapsed,
and ranked in the report like a built-in GAN."""

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO, read_result_json
from tuner.analysis import load_trials
from tuner.analysis.ranking import HEALTH_ORDER
from tuner.objective import COLLAPSE_PENALTY
from tuner.run import main
from tuner.trainable import TRAINER_STATE

pytestmark = pytest.mark.slow
TRAINER, SPACE = "examples.tiny_gan:make_trainer", "examples.tiny_gan:space"
SMALL = ["--trainer", TRAINER, "--space", SPACE, "--limit", "640", "--eval-samples", "200"]


def search(tmp_path, name, data_dir, *flags):
    main([*SMALL, "--data-dir", str(data_dir), "--storage-path", str(tmp_path), "--name", name, *flags])
    return tmp_path / name


def results(experiment):
    """trial id -> (its config, its reports)."""
    found = {}
    for trial in experiment.glob("train_trial_*"):
        rows = read_result_json(trial / "result.json")
        found[rows["trial_id"].iloc[0]] = (json.loads((trial / "params.json").read_text()), rows)
    return found


def test_own_gan_is_searched_evaluated_checkpointed_and_ranked(local_ray, data_dir, tmp_path):
    experiment = search(tmp_path, "own", data_dir, "--num-samples", "2", "--epochs", "2", "--max-concurrent", "2")
    trials = results(experiment)
    assert len(trials) == 2
    for config, rows in trials.values():
        assert config["model"] == TRAINER and {"lr", "hidden", "z_dim", "batch_size"} <= set(config)
        assert rows["fid"].gt(0).all() and rows["kid"].notna().all() and rows["collapse_score"].between(0, 1).all()
        assert rows["epoch"].iloc[0] == 1.0
    assert len({(c["lr"], c["hidden"]) for c, _ in trials.values()}) == 2  # TPE sampled the user's space
    ranked = load_trials(experiment)
    assert sorted(ranked["rank"]) == [1, 2] and set(ranked["model"]) == {TRAINER}
    best_fid = {t: rows["fid"].min() for t, (_, rows) in trials.items()}
    assert ranked.set_index("trial_id")["best_fid"].to_dict() == pytest.approx(best_fid)
    health = ranked.set_index("trial_id")["health"].to_dict()  # healthy first, then by best FID in each group
    assert ranked["trial_id"].tolist() == sorted(best_fid, key=lambda t: (HEALTH_ORDER.index(health[t]), best_fid[t]))
    report = (experiment / "report" / "report.md").read_text()
    assert all(trial_id in report for trial_id in trials)
    checkpoint = max(next(experiment.glob(f"train_trial_{ranked['trial_id'].iloc[0]}*")).glob("checkpoint_*"))
    state = torch.load(checkpoint / TRAINER_STATE, weights_only=True)
    assert {"G", "D", "opt_g", "step"} <= set(state["trainer"])  # the plug-in's own state, resumable
    spec = json.loads((experiment / "search-spec.json").read_text())
    assert spec["trainer"] == TRAINER and spec["space"] == SPACE


def test_own_gan_that_ignores_its_noise_is_stopped_as_collapsed(local_ray, data_dir, tmp_path):
    """ignore_noise is pinned (--fixed) though the space never suggests it; every image is then the
    same, and with patience 1 and no warm-up the collapse stopper ends the trial at its first report."""
    experiment = search(tmp_path, "collapse", data_dir, "--num-samples", "1", "--epochs", "3",
                        "--fixed", "ignore_noise=true", "--collapse-patience", "1", "--collapse-warmup", "0")
    [(config, rows)] = results(experiment).values()
    assert config["ignore_noise"] is True
    assert rows["training_iteration"].tolist() == [1] and rows["end_reason"].tolist() == ["collapse"]
    assert rows["collapsed"].iloc[0] and rows["fid"].iloc[0] > 0
    [trial] = load_trials(experiment).to_dict("records")
    assert trial["health"] == "collapsed" and trial["end_reason"] == "collapse" and trial["rank"] == 1
    assert trial["epochs_run"] == 1.0


@pytest.mark.parametrize("flags,line", [
    (["--trainer", "examples.tiny_gan:nope"], "error: trainer: module 'examples.tiny_gan' has no 'nope'"),
    (["--space", "examples.no_such_module:space"], "error: space: cannot import 'examples.no_such_module'"),
    (["--trainer", "examples.tiny_gan"], "error: trainer: 'examples.tiny_gan' is not package.module:name"),
])
def test_a_trainer_or_space_that_cannot_be_loaded_is_one_line_and_exit_2(flags, line, tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "tuner" / "run.py"), *flags, "--storage-path", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and done.stderr.startswith(line), done.stderr
    assert not any(tmp_path.iterdir())


def test_a_warm_up_verdict_never_stops_and_the_stopper_ends_after_warm_up_plus_patience(local_ray, data_dir,
                                                                                          tmp_path):
    """Flagged at every report (all images alike): the epoch-1 verdict is inside the 1-epoch warm-up
    and stops nothing; epochs 2 and 3 are two flagged evaluations in a row, so patience 2 ends the
    trial at epoch 3 of 5. The reported objective penalises every flagged report; what ASHA compares
    (rung_objective) leaves out the warm-up's verdict only."""
    experiment = search(tmp_path, "patience", data_dir, "--num-samples", "1", "--epochs", "5",
                        "--fixed", "ignore_noise=true", "--collapse-patience", "2", "--collapse-warmup", "1")
    [(_, rows)] = results(experiment).values()
    assert rows["collapsed"].tolist() == [True, True, True]
    assert (rows["objective"] == rows["fid"] + COLLAPSE_PENALTY).all()
    assert rows["rung_objective"].tolist() == [rows["fid"].iloc[0], *rows["objective"].iloc[1:]]
    assert rows["training_iteration"].tolist() == [1, 2, 3]
    assert rows["end_reason"].isna().tolist() == [True, True, False] and rows["end_reason"].iloc[-1] == "collapse"
    [trial] = load_trials(experiment).to_dict("records")
    assert trial["end_reason"] == "collapse" and trial["epochs_run"] == 3.0


@pytest.mark.parametrize("asha", ["reranking", "ray"])
def test_asha_stops_the_worse_trials_at_its_first_rung_and_the_analysis_says_asha(local_ray, data_dir, tmp_path,
                                                                                   asha):
    """One trial at a time in a fixed order: a trainable generator first (FID about 870 after an
    epoch; it neither diverges nor is stopped as collapsed within 3 epochs), then two whose learning
    rate is too small to move them from their initialisation (about 1,080). At the first rung
    (epoch 1, reduction factor 3: the top third goes on) each is behind the first trial, so ASHA
    stops it there; nothing else could (no budget, and the collapse stopper's patience is never
    reached)."""
    from tuner.build import tune
    from tuner.spec import SearchSpec
    spec = SearchSpec(name=f"asha-{asha}", storage_path=str(tmp_path), space="configs", trainer=TRAINER,
                      trial_configs=({"lr": 5e-4}, {"lr": 1e-9}, {"lr": 1e-9, "hidden": 128}), fixed={"z_dim": 16},
                      data_dir=str(data_dir), limit=640, eval_samples=200, epochs=3, max_concurrent=1, asha=asha,
                      grace_period=1, reduction_factor=3, collapse_patience=10)
    tune(spec)
    trials = load_trials(tmp_path / spec.name).set_index("lr")
    assert trials.loc[5e-4, "epochs_run"] == 3.0 and trials.loc[5e-4, "end_reason"] == "completed"
    stopped = trials.loc[1e-9]
    assert stopped["epochs_run"].tolist() == [1.0, 1.0] and stopped["end_reason"].tolist() == ["asha", "asha"]


def make_trainer_failing_once(config: dict, data, device):
    """examples.tiny_gan's trainer, raising after its first epoch while the file `fail_flag` exists."""
    from examples.tiny_gan import make_trainer
    trainer = make_trainer(config, data, device)
    train_epoch = trainer.train_epoch

    def train_epoch_or_fail() -> dict:
        if trainer.step > 0 and os.path.exists(config["fail_flag"]):
            raise RuntimeError("planned failure after epoch 1")
        return train_epoch()
    trainer.train_epoch = train_epoch_or_fail
    return trainer


def test_a_pickle_planted_in_a_trials_checkpoint_runs_nothing_on_resume(local_ray, data_dir, tmp_path):
    """A trial fails after its first checkpoint; a payload is planted in that checkpoint's trainer
    state; --resume retries the errored trial from it. The state is loaded with weights_only, so
    the payload is refused (the trial errors) and the file it would create never appears."""
    from tests.test_bad_input import Payload
    from tuner.build import tune
    from tuner.spec import SearchSpec
    flag, marker = tmp_path / "fail", tmp_path / "payload-ran"
    flag.touch()
    spec = SearchSpec(name="planted", storage_path=str(tmp_path), space="configs",
                      trainer="tests.test_plugin:make_trainer_failing_once",
                      trial_configs=({"lr": 5e-4, "fail_flag": str(flag)},), data_dir=str(data_dir), limit=640,
                      eval_samples=200, epochs=3, early_stop=False, max_failures=0)
    assert len(tune(spec).errors) == 1
    [state] = (tmp_path / "planted").glob(f"train_trial_*/checkpoint_*/{TRAINER_STATE}")
    torch.save({"trainer": Payload(marker), "history": []}, state)
    flag.unlink()  # the retry would train on, were the state loaded
    resumed = tune(spec, resume=True)
    assert len(resumed.errors) == 1 and "weights_only" in str(resumed.errors[0])
    assert not marker.exists()
