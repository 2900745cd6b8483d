"""The one-run CLI: a real short run writes its files and evaluates each epoch like a trial;
`retrain_command` gives back the same config; bad input is one line and exit status 2."""

import json
import math
import shlex
import subprocess
import sys

import pytest

from models.config import GANConfig, VAEConfig
from models.train import build_parser, config_from_args, retrain_command

EVALUATION_KEYS = {"fid", "fid_floor", "kid", "collapsed", "diverged", "collapse_score", "coverage", "entropy",
                   "kl_to_labels", "diversity", "reasons"}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "models.train", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def test_gan_run_evaluates_every_epoch_and_resumes(data_dir, tmp_path):
    out = tmp_path / "run"
    common = ["--loss", "hinge", "--z-dim", "32", "--dataset", "fashion_mnist", "--data-dir", data_dir,
              "--limit", "512", "--batch-size", "64", "--width", "16", "--eval-samples", "2000", "--ema-decay",
              "0.99", "--d-norm", "layer", "--out", out, "--quiet"]
    done = run_cli(*common, "--epochs", "1")
    assert done.returncode == 0, done.stderr
    assert "epoch 1/1" in done.stdout and "fid=" in done.stdout
    resumed = run_cli(*common, "--epochs", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [round(m["epoch"]) for m in lines] == [1, 2] and lines[1]["step"] == 2 * lines[0]["step"]
    for m in lines:  # the fields a trial reports, from the same evaluator at 2000 samples
        assert EVALUATION_KEYS <= m.keys()
        assert math.isfinite(m["fid"]) and m["fid"] > m["fid_floor"] > 0 and math.isfinite(m["kid"])
        assert 0 <= m["collapse_score"] <= 1 and isinstance(m["collapsed"], bool) and isinstance(m["reasons"], str)
    assert lines[0]["fid_floor"] == lines[1]["fid_floor"] and lines[0]["fid"] != lines[1]["fid"]
    assert (out / "samples" / "epoch_002.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "config.json").read_text())["loss"] == "hinge"


def test_a_toy_run_is_evaluated_by_the_toy_evaluator_each_epoch(tmp_path):
    out = tmp_path / "ring"
    done = run_cli("--dataset", "toy2d_ring", "--arch", "mlp", "--loss", "hinge", "--width", "16", "--batch-size",
                   "256", "--epochs", "2", "--eval-samples", "500", "--out", out, "--quiet")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1.0, 2.0]
    for m in lines:  # the toy evaluator's fields, not the image evaluator's
        assert {"sliced_wasserstein", "high_quality_share", "balance", "collapsed", "reasons"} <= m.keys()
        assert 0 <= m["coverage"] <= 8 and m["sliced_wasserstein"] > m["sliced_wasserstein_floor"] > 0
        assert "kid" not in m
    assert (out / "samples" / "epoch_002.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_vae_run_writes_reconstructions_samples_interpolations(data_dir, tmp_path):
    done = run_cli("--model", "vae", "--dataset", "mnist", "--data-dir", data_dir, "--limit", "512",
                   "--epochs", "1", "--latent-dim", "8", "--out", tmp_path, "--quiet")
    assert done.returncode == 0, done.stderr
    for kind in ("reconstructions", "samples", "interpolations"):
        assert (tmp_path / "samples" / f"{kind}_epoch_001.png").is_file()
    metrics = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert {"loss", "recon", "kl", "test_loss", "test_recon", "test_kl"} <= metrics.keys()


@pytest.mark.parametrize("args,named", [
    (["--model", "gan3"], "--model"),
    (["--loss", "lsgan"], "bce"),
    (["--dataset", "svhn"], "fashion_mnist"),
    (["--arch", "resnet"], "dcgan"),
    (["--lr-g", "0"], "lr_g"),
    (["--z-dim", "-3"], "z_dim"),
    (["--batch-size", "0"], "batch_size"),
    (["--epochs", "0"], "epochs"),
    (["--loss", "wgan-gp", "--d-norm", "batch"], "d_norm: 'batch' cannot train with loss 'wgan-gp'"),
    (["--loss", "bce", "--clip-value", "0.1"], "clip_value: applies to loss wgan only"),
    (["--d-norm", "instance"], "spectral"),
    (["--ema-decay", "1"], "ema_decay"),
    (["--eval-samples", "-1"], "eval_samples"),
    (["--data-dir", "{tmp}", "--no-download"], "{tmp}"),
    (["--dataset", "idx", "--idx-images", "{tmp}/nope", "--idx-labels", "{tmp}/nope"], "{tmp}/nope"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, named):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    done = run_cli(*args, "--out", tmp_path / "out")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and named.replace("{tmp}", str(tmp_path)) in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def round_trip(config: dict):
    words = shlex.split(retrain_command(config))
    assert words[:3] == ["python", "-m", "models.train"]
    return build_parser().parse_args(words[3:])


@pytest.mark.parametrize("config", [
    {"model": "gan", "dataset": "mnist", "loss": "wgan-gp", "gp_lambda": 4.5, "d_norm": "layer", "ema_decay": 0.999,
     "ema_start": 0.5, "lr_decay": "linear", "beta1": 0.1, "beta2": 0.999, "lr_g": 3.3e-4, "lr_d": 1.234e-3,
     "n_critic": 3, "z_dim": 32, "width": 128, "batch_size": 32, "epochs": 5, "seed": 2},
    {"model": "gan", "dataset": "fashion_mnist", "loss": "bce", "real_label": 0.9, "d_norm": "batch",
     "arch": "mlp", "width": 32},
    {"model": "gan", "dataset": "fashion_mnist", "loss": "wgan", "clip_value": 0.02, "d_norm": "spectral"},
])
def test_retrain_command_parses_back_to_the_same_gan_config(config):
    args = round_trip({**config, "limit": 1000, "trial_id": "not a flag"})
    assert config_from_args(args) == GANConfig.from_dict({k: v for k, v in config.items()
                                                          if k not in ("model", "dataset")})
    assert (args.model, args.dataset, args.limit) == (config["model"], config["dataset"], 1000)


def test_retrain_command_parses_back_to_the_same_vae_config():
    config = {"model": "vae", "dataset": "mnist", "latent_dim": 8, "lr": 2.5e-4, "beta": 0.5, "regularized": True,
              "dropout": 0.3, "width": 16, "batch_size": 64, "epochs": 3}
    args = round_trip(config)
    assert config_from_args(args) == VAEConfig.from_dict({k: v for k, v in config.items()
                                                          if k not in ("model", "dataset")})


def test_every_config_field_has_a_flag():
    dests = vars(build_parser().parse_args([]))
    assert GANConfig.keys() <= dests.keys() and VAEConfig.keys() <= dests.keys()
