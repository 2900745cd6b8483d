"""The winner handed over, on a real three-trial search (tuner/run.py on a local Ray, Fashion-MNIST):
each trial's best generator survives checkpoint pruning, load_generator returns the trial the
ranking names best, tuner.sample writes its grid and array, and the report shows the model's
file, its samples and the command that retrains it."""

import html
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from models.config import GANConfig, VAEConfig
from models.gan_trainer import GANTrainer
from models.nets import evaluating
from models.train import build_parser, config_from_args
from models.vae_trainer import VAETrainer
from tests.conftest import REPO
from tuner.analysis import load_history, load_trials, write_report
from tuner.analysis.frames import latest_checkpoint
from tuner.handover import BEST_GENERATOR, BestGenerator, load_generator, read_generator, sample

pytestmark = pytest.mark.slow
SAMPLE = [sys.executable, "-m", "tuner.sample"]
LIMIT, EVAL_SAMPLES, STEPS_PER_REPORT = 1000, 200, 8  # 15 batches an epoch: 4 reports in 2 epochs


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, data_dir):
    """Three smoke trials, every one run to the end, one checkpoint kept of each trial's four."""
    root = tmp_path_factory.mktemp("handover")
    env = {**os.environ, "RAY_ADDRESS": "local", "GANTUNE_DATA_DIR": str(data_dir)}
    done = subprocess.run([sys.executable, str(REPO / "tuner" / "run.py"), "--space", "smoke", "--num-samples", "3",
                           "--epochs", "2", "--limit", str(LIMIT), "--eval-samples", str(EVAL_SAMPLES),
                           "--steps-per-report", str(STEPS_PER_REPORT), "--no-early-stop", "--keep-checkpoints", "1",
                           "--storage-path", str(root), "--name", "exp"],
                          env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "exp"


@pytest.fixture(scope="module")
def trials(experiment):
    return load_trials(experiment)


def stored(trial_path) -> dict:
    return torch.load(latest_checkpoint(trial_path) / BEST_GENERATOR, weights_only=True)


def run_sample(*args, cwd=REPO):
    return subprocess.run([*SAMPLE, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_every_trial_keeps_its_best_generator_through_pruning(experiment, trials):
    history = load_history(experiment)
    assert len(trials) == 3
    best_before_last = 0
    for _, trial in trials.iterrows():
        reports = history[history["trial_id"] == trial["trial_id"]]
        assert len(reports) == 4 and len(list(Path(trial["path"]).glob("checkpoint_*"))) == 1  # three pruned
        meta = stored(trial["path"])["meta"]
        best = reports.loc[reports["objective"].idxmin()]
        assert meta["objective"] == pytest.approx(best["objective"], rel=1e-12)
        assert meta["epoch"] == pytest.approx(best["epoch"])
        assert meta["config"]["loss"] == trial["loss"] and meta["z_dim"] == trial["z_dim"]
        best_before_last += best["training_iteration"] < reports["training_iteration"].max()
    assert best_before_last, "no trial's best evaluation came before its last: pruning was not exercised"


def test_load_generator_returns_the_trial_ranked_first(experiment, trials):
    generator, config, meta = load_generator(experiment)
    winner = trials.iloc[0]
    assert meta["trial_id"] == winner["trial_id"] and meta["rank"] == 1 and meta["health"] == winner["health"]
    assert meta["path"] == str(latest_checkpoint(winner["path"]) / BEST_GENERATOR)
    assert config["loss"] == winner["loss"] and config["dataset"] == "fashion_mnist"
    assert not generator.training and all(p.device.type == "cpu" for p in generator.parameters())
    images = sample(generator, meta, 10, seed=3)
    assert images.shape == (10, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
    assert images.min() < 0.5 < images.max()  # mapped from [-1, 1], not clipped into a corner
    assert torch.equal(images, sample(generator, meta, 10, seed=3))
    assert not torch.equal(images, sample(generator, meta, 10, seed=4))


def test_sample_cli_writes_the_grid_and_the_array(experiment, trials, tmp_path):
    done = run_sample(experiment, "--n", 100, "--out", tmp_path / "grid.png", "--npz", 300, "--seed", 1)
    assert done.returncode == 0, done.stderr
    assert trials.iloc[0]["trial_id"] in done.stdout
    grid = plt.imread(tmp_path / "grid.png")
    assert grid.shape[:2] == (10 * 30 + 2, 10 * 30 + 2)  # 10 x 10 images of 28 px with 2 px padding
    samples = np.load(tmp_path / "samples.npz")["samples"]
    assert samples.shape == (300, 1, 28, 28) and samples.dtype == np.float32
    assert samples.min() >= 0 and samples.max() <= 1
    generator, _, meta = load_generator(experiment)
    assert np.array_equal(samples, sample(generator, meta, 300, seed=1).numpy())


def test_sample_cli_takes_another_trial_and_a_relative_path(experiment, trials, tmp_path):
    other = trials.iloc[-1]
    done = run_sample(experiment.name, "--trial", other["trial_id"], "--n", 4, "--out", tmp_path / "g.png",
                      "--npz", 5, "--npz-out", tmp_path / "other.npz", cwd=experiment.parent)
    assert done.returncode == 0, done.stderr
    assert f"trial {other['trial_id']} (rank {other['rank']}" in done.stdout
    generator, meta = read_generator(latest_checkpoint(other["path"]) / BEST_GENERATOR)
    assert np.array_equal(np.load(tmp_path / "other.npz")["samples"], sample(generator, meta, 5, seed=0).numpy())
    assert plt.imread(tmp_path / "g.png").shape[:2] == (2 * 30 + 2, 2 * 30 + 2)


@pytest.mark.parametrize("args, field", [(["--trial", "nope"], "trial"), (["--n", "0"], "n"),
                                         (["--npz-out", "x.npz"], "npz-out")])
def test_sample_cli_bad_input_is_one_line_and_exit_2(experiment, tmp_path, args, field):
    done = run_sample(experiment, *args, "--out", tmp_path / "g.png")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {field}:"), done.stderr
    assert not (tmp_path / "g.png").exists()


def test_sample_cli_on_a_missing_experiment_is_one_line_and_exit_2(tmp_path):
    done = run_sample(tmp_path / "nothing-here")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "experiment_dir" in done.stderr


def test_report_shows_the_best_model_its_samples_and_its_retrain_command(experiment, trials, tmp_path):
    write_report(experiment, tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    winner = trials.iloc[0]
    best_model = markdown.split("## Best model", 1)[1].split("## Ranking", 1)[0]  # before the ranking
    assert str(latest_checkpoint(winner["path"]) / BEST_GENERATOR) in best_model
    assert "(plots/best_samples.png)" in best_model
    assert plt.imread(tmp_path / "plots" / "best_samples.png").shape[:2] == (10 * 30 + 2, 10 * 30 + 2)
    command = re.search(r"```\n(python -m models.train .*)\n```", best_model).group(1)
    args = build_parser().parse_args(shlex.split(command)[3:])
    config = stored(winner["path"])["meta"]["config"]
    hyper = {k: v for k, v in config.items() if k not in ("model", "dataset")}
    assert (args.model, args.dataset, args.limit) == (config["model"], config["dataset"], LIMIT)
    assert config_from_args(args) == GANConfig.from_dict(hyper)
    page = (tmp_path / "report.html").read_text()
    assert "Best model" in page and html.escape(command) in page
    assert page.index("Best model") < page.index("Ranking")


def test_a_restored_tracker_keeps_its_best_and_writes_the_kept_weights(fashion_train, tmp_path):
    """What --resume relies on: the state round-trips through torch.save as the trainer state does, and a
    restored tracker neither forgets its best nor lets a worse evaluation replace it. With EMA on, the
    EMA generator is what is kept."""
    trainer = GANTrainer(GANConfig(width=16, batch_size=32, ema_decay=0.9), fashion_train.subset(256, seed=0))
    config = {"model": "gan", "dataset": "fashion_mnist", "width": 16, "batch_size": 32, "ema_decay": 0.9}
    tracker = BestGenerator()
    assert tracker.state() is None and tracker.write(tmp_path) is None
    trainer.train_steps(4)
    assert tracker.update(trainer, config, 300.0, trainer.epoch)
    kept = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    assert trainer.generator is not trainer.G and not same_weights(trainer.G, kept)
    torch.save({"best_generator": tracker.state()}, tmp_path / "trainer.pt")
    restored = BestGenerator.from_state(torch.load(tmp_path / "trainer.pt", weights_only=True)["best_generator"])
    assert restored.meta == tracker.meta

    trainer.train_steps(4)  # the weights move on
    assert not restored.update(trainer, config, 400.0, trainer.epoch)
    assert not restored.update(trainer, config, float("nan"), trainer.epoch)
    generator, meta = read_generator(restored.write(tmp_path))
    assert meta["objective"] == 300.0 and meta["epoch"] == pytest.approx(4 / len(trainer.batches))
    assert same_weights(generator, kept) and not same_weights(trainer.generator, kept)

    assert restored.update(trainer, config, 250.0, trainer.epoch)  # strictly better: replaced
    generator, meta = read_generator(restored.write(tmp_path))
    assert meta["objective"] == 250.0 and same_weights(generator, trainer.generator.state_dict())


def same_weights(module: torch.nn.Module, weights: dict) -> bool:
    return all(torch.equal(module.state_dict()[k].cpu(), v.cpu()) for k, v in weights.items())


def test_a_vae_hands_over_its_decoder(fashion_train, tmp_path):
    trainer = VAETrainer(VAEConfig(latent_dim=8, width=16, batch_size=32), fashion_train.subset(256, seed=0))
    trainer.train_steps(4)
    tracker = BestGenerator()
    assert tracker.update(trainer, {"model": "vae", "dataset": "fashion_mnist", "latent_dim": 8}, 200.0, trainer.epoch)
    generator, meta = read_generator(tracker.write(tmp_path))
    assert meta["z_dim"] == 8 and meta["model"] == "vae"
    images = sample(generator, meta, 6, seed=0)
    z = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    with evaluating(trainer.model):
        assert torch.equal(images, trainer.model.decode(z))
    assert images.shape == (6, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
