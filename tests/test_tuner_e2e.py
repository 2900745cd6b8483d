"""End to end, the path `ray submit` takes: a real `ray start --head` on loopback, then
tuner/run.py against it through RAY_ADDRESS; bad flags fail before any trial starts."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster import Cluster, free_ports
from tests.conftest import REPO, read_result_json

RAY = Path(sys.executable).with_name("ray")
RUN = [sys.executable, str(REPO / "tuner" / "run.py")]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A head started by `ray start --head` on loopback with Ray's token authentication on; it and
    its clients find the token in ~/.ray/auth_token, as a user's do. It is stopped by its own
    processes, never by `ray stop`, which would stop every Ray on the machine (other tests' too)."""
    subprocess.run([str(RAY), "get-auth-token", "--generate"], check=True, capture_output=True, timeout=60)
    cluster = Cluster(tmp_path_factory.mktemp("rayhead"), private_token=False)
    cluster.start_head(num_cpus=2, timeout=180)
    yield cluster
    cluster.shutdown()


def test_smoke_search_against_a_running_head(ray_head, data_dir, tmp_path):
    env = {**ray_head.driver_env, "GANTUNE_DATA_DIR": str(data_dir)}
    done = subprocess.run([*RUN, "--space", "smoke", "--model", "both", "--num-samples", "3",
                           "--storage-path", str(tmp_path), "--name", "e2e"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "best: fid=" in done.stdout
    trials = sorted(p for p in (tmp_path / "e2e").iterdir() if p.is_dir() and p.name.startswith("train_trial"))
    assert len(trials) == 3
    for trial in trials:
        rows = read_result_json(trial / "result.json")
        config = json.loads((trial / "params.json").read_text())
        assert config["dataset"] == "fashion_mnist" and config["model"] in ("gan", "vae")
        last = rows.iloc[-1]
        assert last["fid"] > 0 and last["fid_floor"] > 0 and 0 <= last["collapse_score"] <= 1
        assert rows["training_iteration"].tolist() == list(range(1, len(rows) + 1))
        assert (trial / f"checkpoint_{len(rows) - 1:06d}" / "trainer.pt").is_file()  # the latest is kept


@pytest.mark.parametrize("args,named", [
    (["--epochs", "-1"], "epochs"),
    (["--gpus-per-trial", "1.5"], "gpus-per-trial"),
    (["--space", "tiny"], "space"),
    (["--storage-path", "/proc/gantune"], "storage-path"),
    (["--num-samples", "0"], "num-samples"),
    (["--random-trials", "-1"], "random-trials"),
    (["--budget-trial-epochs", "0"], "budget-trial-epochs"),
    (["--fixed", "width"], "fixed"),
])
def test_bad_flags_fail_before_any_trial(args, named, tmp_path):
    done = subprocess.run([*RUN, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], done.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_unreachable_ray_address_is_one_line(tmp_path):
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{free_ports(1)[0]}"}
    done = subprocess.run([*RUN, "--storage-path", str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "RAY_ADDRESS" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def trial_rows(experiment: Path) -> dict[str, list[dict]]:
    """trial directory name -> the rows of its result.json (a row is one report)."""
    rows = {}
    for trial in sorted(p for p in experiment.glob("train_trial*") if p.is_dir()):
        result = trial / "result.json"
        rows[trial.name] = []
        for line in (result.read_text().splitlines() if result.is_file() else []):
            try:
                rows[trial.name].append(json.loads(line))
            except json.JSONDecodeError:  # the driver is still writing this line
                break
    return rows


def test_sigint_then_resume_finishes_every_trial_exactly_once(data_dir, tmp_path):
    """Ctrl+C on the driver mid-search, then --resume: all trials end, none twice, no report lost.

    The driver starts its own local Ray (RAY_ADDRESS=local: never another engineer's `ray start`
    cluster), so the interrupt also tears down the trial that was running, as on a laptop. The
    interrupt is sent once one trial has finished and the next one has two of its four epochs still
    to go (polled from result.json, no blind sleep), so the resumed run has a finished trial to leave
    alone, a half-done one to continue from its checkpoint, and one not yet started. The resume
    gives other values for settings a resumed search must keep (data subset, seed, epochs,
    evaluation samples); the trials must go on with the interrupted run's.
    """
    samples, epochs = 3, 4
    name = "resume"
    experiment = tmp_path / name
    env = {**os.environ, "RAY_ADDRESS": "local", "GANTUNE_DATA_DIR": str(data_dir)}
    cmd = [*RUN, "--space", "smoke", "--model", "gan", "--num-samples", str(samples), "--epochs", str(epochs),
           "--max-concurrent", "1", "--limit", "1920", "--eval-samples", "200", "--no-early-stop",
           "--storage-path", str(tmp_path), "--name", name]
    with open(tmp_path / "first.log", "w") as log:
        driver = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 600
            while True:
                if driver.poll() is not None:
                    pytest.fail(f"driver ended before the interrupt:\n{(tmp_path / 'first.log').read_text()[-3000:]}")
                assert time.monotonic() < deadline, "no trial finished within 10 minutes"
                counts = [len(r) for r in trial_rows(experiment).values()] if experiment.is_dir() else []
                finished = sum(c >= epochs for c in counts)
                if finished >= 1 and any(0 < c < epochs - 1 for c in counts):  # two epochs still to go
                    break
                time.sleep(0.2)
            driver.send_signal(signal.SIGINT)  # Tune saves the experiment state and fit() returns
            driver.wait(timeout=300)
        finally:
            if driver.poll() is None:  # the test failed: stop the driver, which takes its local Ray down
                driver.terminate()
                try:
                    driver.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    driver.kill()
                    driver.wait()
    first_log = (tmp_path / "first.log").read_text()
    assert driver.returncode == 130, f"driver exit {driver.returncode} after Ctrl+C:\n{first_log[-3000:]}"
    assert "--resume" in first_log  # the interrupted run says how to finish it
    before = trial_rows(experiment)
    done_before = {t for t, r in before.items() if len(r) == epochs}
    mid_before = {t for t, r in before.items() if 0 < len(r) < epochs}
    assert done_before and mid_before, f"the interrupt came too late to test --resume mid-trial: {before}"
    files_before = {t: (experiment / t / "result.json").read_bytes() for t in before}

    # other data, seed, epochs or evaluation size on resume must not change what the trials go on with
    resumed = subprocess.run([*cmd, "--resume", "--limit", "999", "--seed", "5", "--epochs", "6", "--eval-samples",
                              "300"], env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for setting in ("limit", "seed", "epochs", "eval-samples"):
        assert setting in resumed.stderr.split("using the interrupted run's", 1)[1].splitlines()[0], setting
    spec = json.loads((experiment / "search-spec.json").read_text())
    assert (spec["limit"], spec["seed"], spec["epochs"], spec["eval_samples"]) == (1920, 0, epochs, 200)  # as first written
    assert "best: fid=" in resumed.stdout

    after = trial_rows(experiment)
    assert len(after) == samples, f"expected {samples} trials, got {sorted(after)}"
    assert len({r["fid_floor"] for rows in after.values() for r in rows}) == 1  # one evaluation size (200) throughout
    assert len({rows[0]["trial_id"] for rows in after.values()}) == samples
    for trial, rows in after.items():
        assert [r["training_iteration"] for r in rows] == list(range(1, epochs + 1)), trial  # none lost, none twice
        assert rows[-1]["epoch"] == pytest.approx(epochs) and rows[-1]["end_reason"], trial
        assert not (experiment / trial / "error.txt").exists(), trial
        if trial in done_before:  # finished before the interrupt: not rerun, not touched
            assert (experiment / trial / "result.json").read_bytes() == files_before[trial], trial
        assert json.loads((experiment / trial / "params.json").read_text())["seed"] == 0, trial
        if trial in mid_before:  # interrupted mid-trial: continued from its checkpoint, earlier rows kept
            assert (experiment / trial / "result.json").read_bytes().startswith(files_before[trial]), trial
            steps = [r["step"] for r in rows]
            assert steps == sorted(set(steps)), f"{trial} retrained steps it had reported: {steps}"
        assert rows[-1]["step"] == epochs * 1920 // 64, trial  # 30 batches an epoch: the original 1,920 images


def test_gpus_a_local_ray_does_not_have_is_one_line_and_exit_2(tmp_path, data_dir):
    """A local Ray never grows, so GPU trials on a machine without GPUs would wait forever."""
    env = {**os.environ, "RAY_ADDRESS": "local", "GANTUNE_DATA_DIR": str(data_dir)}
    done = subprocess.run([*RUN, "--space", "smoke", "--gpus-per-trial", "0.5", "--storage-path", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "error: gpus-per-trial: 0.5 requested but the cluster has 0 GPU(s)"
    assert not any(tmp_path.glob("*/train_trial*"))


def test_seed_grid_runs_every_point_of_the_labs_grid_once(data_dir, tmp_path):
    """The preset that reproduces the labs' table: each grid point is one trial, run to the end."""
    env = {**os.environ, "RAY_ADDRESS": "local", "GANTUNE_DATA_DIR": str(data_dir)}
    done = subprocess.run([*RUN, "--space", "seed-grid", "--dataset", "fashion_mnist", "--epochs", "1",
                           "--limit", "640", "--eval-samples", "200", "--storage-path", str(tmp_path),
                           "--name", "grid"], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    configs = sorted((c["model"], c.get("loss"), c.get("z_dim"), c.get("latent_dim"))
                     for c in (json.loads(p.read_text()) for p in (tmp_path / "grid").glob("train_trial*/params.json")))
    assert configs == sorted([("gan", loss, z, None) for loss in ("bce", "hinge") for z in (32, 64, 128)]
                             + [("vae", None, None, d) for d in (8, 16, 32)])
    for result in (tmp_path / "grid").glob("train_trial*/result.json"):
        assert [json.loads(line)["epoch"] for line in result.read_text().splitlines()] == [1.0]
