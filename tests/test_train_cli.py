"""The one-run CLI: a real short run writes its files; bad input is one line and exit status 2."""

import json
import subprocess
import sys

import pytest


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "models.train", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def test_one_epoch_gan_run_writes_metrics_samples_and_checkpoint(data_dir, tmp_path):
    out = tmp_path / "run"
    common = ["--loss", "hinge", "--z-dim", "32", "--dataset", "fashion_mnist", "--data-dir", data_dir,
              "--limit", "512", "--batch-size", "64", "--width", "16", "--out", out, "--quiet"]
    done = run_cli(*common, "--epochs", "1")
    assert done.returncode == 0, done.stderr
    assert "epoch 1/1" in done.stdout
    resumed = run_cli(*common, "--epochs", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [round(m["epoch"]) for m in lines] == [1, 2] and lines[1]["step"] == 2 * lines[0]["step"]
    assert (out / "samples" / "epoch_002.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "config.json").read_text())["loss"] == "hinge"


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
