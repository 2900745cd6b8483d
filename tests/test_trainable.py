"""The trainable on a real in-process Ray instance with a logical GPU: fractional sharing,
divergence ending a trial, and the checkpoint a restarted trial resumes from (with the best
generator so far, for the hand-over)."""

from pathlib import Path

import pandas as pd
import pytest
import ray
import torch

from models.evaluation import Evaluator
from tuner.analysis import load_trials
from tuner.build import build_tuner
from tuner.handover import BEST_GENERATOR
from tuner.spec import SearchSpec
from tuner.trainable import GRIDS, TRAINER_STATE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_with_one_logical_gpu():
    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def datasets(fashion_train, data_dir):
    evaluator = Evaluator.for_dataset("fashion_mnist", data_dir, n_samples=200)
    return {"fashion_mnist": (fashion_train.subset(4096, seed=0), evaluator)}


def run_trials(datasets, tmp_path, configs, gpus=0.0, early_stop=True, seed=0, trainable=None, **spec_fields):
    """Two epochs of each config (64 steps an epoch) on the in-process Ray; `spec_fields` override
    the SearchSpec's (its warm-up is 0 here unless given)."""
    fields = {"name": "exp", "collapse_warmup": 0, "max_failures": 0, **spec_fields}
    spec = SearchSpec(storage_path=str(tmp_path), space="configs", trial_configs=configs,
                      fixed={"width": 16, "batch_size": 64}, epochs=2, eval_samples=200, early_stop=early_stop,
                      gpus_per_trial=gpus, seed=seed,
                      max_concurrent=len(configs), **fields)  # with a cap, Tune starts them together
    return build_tuner(spec, datasets, trainable).fit()


def failing_once_after_first_report():
    """train_trial that fails after its epoch-1 report and checkpoint, once: Ray then restarts it
    from that checkpoint. Restarting a trial, Ray's JSON logger replaces the driver's result.json
    with the storage path's copy, which the driver syncs only every few seconds; a failure raised
    before that sync loses the report from the record (seen under load: epochs [2.0]). So the
    failure waits until the storage path's result.json holds the report. A closure, so Ray ships
    it by value."""
    def trainable(config, *, datasets, settings):
        import time

        from ray import tune
        from ray.train._internal.session import get_session

        from tuner.trainable import train_trial
        if tune.get_checkpoint() is None:  # the first attempt: one epoch, reported and checkpointed
            train_trial({**config, "epochs": 1}, datasets=datasets, settings=settings)
            logged = Path(get_session().storage.trial_fs_path) / "result.json"  # a local storage path here
            deadline = time.monotonic() + 300
            while not (logged.exists() and logged.read_text().strip()) and time.monotonic() < deadline:
                time.sleep(0.1)
            raise RuntimeError("a deliberate failure after the first checkpoint")
        train_trial(config, datasets=datasets, settings=settings)
    return trainable


def most_at_once(results) -> int:
    """The largest number of trials running at the same moment, from each trial's start and end."""
    spans = []
    for result in results:
        history = result.metrics_dataframe
        end = history["timestamp"].max()
        spans.append((end - history["time_total_s"].max(), end))
    return max(sum(start <= moment < end for start, end in spans) for moment, _ in spans)


@pytest.mark.parametrize("gpus,expected", [(0.25, 4), (0.5, 2)])
def test_the_gpu_share_decides_how_many_trials_run_at_once(ray_with_one_logical_gpu, datasets, tmp_path, gpus,
                                                           expected):
    """Four 1-CPU trials on 4 CPUs and one GPU: CPUs alone would run all four together, so only the
    GPU share can hold the half-GPU trials to two at a time (and a dropped GPU request fails it)."""
    results = run_trials(datasets, tmp_path, [{"z_dim": z} for z in (16, 32, 48, 64)], gpus=gpus,
                         early_stop=False)  # no ASHA: all four run both epochs
    assert not results.errors
    assert most_at_once(results) == expected
    assert all(result.metrics["device"] == "cpu" for result in results)  # no CUDA here: logical GPU only


def test_absurd_learning_rate_diverges_while_the_rest_finish(ray_with_one_logical_gpu, datasets, tmp_path):
    """With the product's default warm-up (a third of the epochs: epoch 1 here). A 2-epoch GAN on 4k
    images is young: flagged like nearly every GAN at its first evaluations, so with no warm-up it
    ended `collapse` by design. In the warm-up a verdict never stops a trial, a divergence does."""
    results = run_trials(datasets, tmp_path, [{"loss": "bce", "lr_g": lr, "lr_d": 2e-4} for lr in (2e-4, 1e3)],
                         collapse_warmup=None)
    by_lr = {r.config["lr_g"]: r for r in results}
    assert by_lr[1e3].metrics["end_reason"] == "diverged"
    assert by_lr[1e3].metrics["training_iteration"] == 1  # stopped at once, inside the warm-up
    sane = by_lr[2e-4]
    assert sane.metrics["training_iteration"] == 2 and sane.metrics["end_reason"] == "completed"
    assert not sane.metrics_dataframe["diverged"].any()


def test_checkpoint_holds_the_trainer_state_to_resume_from(ray_with_one_logical_gpu, datasets, tmp_path):
    results = run_trials(datasets, tmp_path, [{}], seed=5)
    result = results[0]
    with result.checkpoint.as_directory() as path:
        state = torch.load(f"{path}/{TRAINER_STATE}", weights_only=True)
        grids = sorted(p.name for p in (Path(path) / GRIDS).iterdir())
        best_file = torch.load(Path(path) / BEST_GENERATOR, weights_only=True)
    assert state["trainer"]["step"] == result.metrics["step"] and len(state["history"]) == 2
    assert grids == sorted(state["grids"]) == ["epoch_1.png", "epoch_2.png"]  # every report's grid, for the report
    frame = pd.DataFrame(result.metrics_dataframe)
    assert frame["epoch"].tolist() == [1.0, 2.0]
    assert frame["objective"].iloc[0] != frame["objective"].iloc[1]
    assert frame["searcher_objective"].tolist() == [frame["objective"].iloc[0]] * 2  # frozen at ASHA's first rung
    assert state["searcher_rung"] == (pytest.approx(frame["fid"].iloc[0]), frame["collapsed"].iloc[0])
    best = frame.loc[frame["objective"].idxmin()]
    assert state["best_generator"]["meta"]["objective"] == best_file["meta"]["objective"] == best["objective"]
    assert best_file["meta"]["epoch"] == best["epoch"] and result.config["seed"] == 5

    # the same trial failing after its first checkpoint restarts from it and continues exactly
    restarted = run_trials(datasets, tmp_path, [{}], seed=5, trainable=failing_once_after_first_report(),
                           name="restarted", max_failures=1)[0]
    assert load_trials(tmp_path / "restarted")["num_failures"].tolist() == [1]
    again = pd.DataFrame(restarted.metrics_dataframe)
    assert again["epoch"].tolist() == [1.0, 2.0]  # epoch 1 not trained twice
    straight, resumed = frame.set_index("epoch").loc[2.0], again.set_index("epoch").loc[2.0]
    for key in ("step", "d_loss", "g_loss", "d_real", "d_fake", "fid", "kid", "collapse_score", "objective"):
        assert resumed[key] == straight[key], key


def test_steps_per_report_reports_at_fractional_epochs(ray_with_one_logical_gpu, datasets, tmp_path):
    """--steps-per-report 48 at 64 steps an epoch: reports at steps 48 and 96, then the rest of the
    second epoch, so epochs 0.75, 1.5 and 2."""
    results = run_trials(datasets, tmp_path, [{}], early_stop=False, steps_per_report=48)
    frame = pd.DataFrame(results[0].metrics_dataframe)
    assert frame["step"].tolist() == [48, 96, 128]
    assert frame["epoch"].tolist() == [0.75, 1.5, 2.0]
    assert frame["training_iteration"].tolist() == [1, 2, 3]
