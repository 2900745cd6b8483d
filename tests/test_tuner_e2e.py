"""End to end, the path `ray submit` takes: a real `ray start --head` on loopback, then
tuner/run.py against it through RAY_ADDRESS; bad flags fail before any trial starts."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO

RAY = Path(sys.executable).with_name("ray")
RUN = [sys.executable, str(REPO / "tuner" / "run.py")]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory, monkeypatch_module):
    """A head with Ray's token authentication on; its clients find the token in ~/.ray/auth_token."""
    port = free_port()
    temp_dir = tmp_path_factory.mktemp("rayhead")
    monkeypatch_module.setenv("RAY_AUTH_MODE", "token")
    subprocess.run([str(RAY), "get-auth-token", "--generate"], check=True, capture_output=True, timeout=60)
    subprocess.run([str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                    "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false", f"--temp-dir={temp_dir}"],
                   check=True, capture_output=True, timeout=180)
    yield f"127.0.0.1:{port}"
    subprocess.run([str(RAY), "stop", "--force"], capture_output=True, timeout=120)


def test_smoke_search_against_a_running_head(ray_head, data_dir, tmp_path):
    env = {**os.environ, "RAY_ADDRESS": ray_head, "GANTUNE_DATA_DIR": str(data_dir)}
    done = subprocess.run([*RUN, "--space", "smoke", "--model", "both", "--num-samples", "3",
                           "--storage-path", str(tmp_path), "--name", "e2e"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "best: fid=" in done.stdout
    trials = sorted(p for p in (tmp_path / "e2e").iterdir() if p.is_dir() and p.name.startswith("train_trial"))
    assert len(trials) == 3
    for trial in trials:
        rows = pd.read_json(trial / "result.json", lines=True)
        config = json.loads((trial / "params.json").read_text())
        assert config["dataset"] == "fashion_mnist" and config["model"] in ("gan", "vae")
        last = rows.iloc[-1]
        assert last["fid"] > 0 and last["fid_floor"] > 0 and 0 <= last["collapse_score"] <= 1
        assert rows["training_iteration"].tolist() == list(range(1, len(rows) + 1))
        assert (trial / f"checkpoint_{len(rows) - 1:06d}" / "trainer.pt").is_file()  # the latest is kept


@pytest.mark.parametrize("args,named", [
    (["--epochs", "-1"], "epochs"),
    (["--gpus-per-trial", "1.5"], "gpus-per-trial"),
    (["--space", "tiny"], "--space"),
    (["--storage-path", "/proc/gantune"], "storage-path"),
    (["--num-samples", "0"], "num-samples"),
])
def test_bad_flags_fail_before_any_trial(args, named, tmp_path):
    done = subprocess.run([*RUN, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], done.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_unreachable_ray_address_is_one_line(tmp_path):
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{free_port()}"}
    done = subprocess.run([*RUN, "--storage-path", str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "RAY_ADDRESS" in done.stderr and len(done.stderr.strip().splitlines()) == 1
