"""One driver per experiment: `tune` holds STORAGE/NAME.lock while it runs, a second driver of the
same experiment refuses with one line, and a lock whose driver is gone is taken over. The two-driver
case runs on a real local Ray: the second refuses, the first finishes, the analysis shows all of it."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from models.errors import UserInputError
from tests.conftest import REPO
from tuner.analysis import load_trials
from tuner.build import LOCK_SUFFIX, experiment_lock, process_start
from tuner.objective import EndReason
from tuner.spec import SearchSpec

RUN = [sys.executable, str(REPO / "tuner" / "run.py")]


def spec_in(tmp_path) -> SearchSpec:
    return SearchSpec(name="exp", storage_path=str(tmp_path))


def write_lock(tmp_path, **owner) -> None:
    (tmp_path / f"exp{LOCK_SUFFIX}").write_text(json.dumps({"time": time.time(), **owner}))


def test_the_lock_is_held_while_the_driver_runs_and_released_even_on_an_error(tmp_path):
    lock = tmp_path / f"exp{LOCK_SUFFIX}"
    with pytest.raises(RuntimeError), experiment_lock(spec_in(tmp_path)):
        owner = json.loads(lock.read_text())
        assert (owner["pid"], owner["host"]) == (os.getpid(), socket.gethostname())
        with pytest.raises(UserInputError, match=f"in use by another driver \\(pid {os.getpid()} on "), \
                experiment_lock(spec_in(tmp_path)):
            pass
        raise RuntimeError("the search failed")
    assert not lock.exists()


def test_a_dead_drivers_lock_is_stale_and_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_lock(tmp_path, pid=dead.pid, host=socket.gethostname(), started="1")
    with experiment_lock(spec_in(tmp_path)):
        assert json.loads((tmp_path / f"exp{LOCK_SUFFIX}").read_text())["pid"] == os.getpid()


def test_a_pid_reused_by_another_process_is_not_the_driver(tmp_path):
    assert process_start(os.getpid()) is not None  # Linux: the start time tells the two apart
    write_lock(tmp_path, pid=os.getpid(), host=socket.gethostname(), started="not when this process started")
    with experiment_lock(spec_in(tmp_path)):
        pass


def test_a_lock_from_another_host_is_respected_and_says_how_to_clear_it(tmp_path):
    write_lock(tmp_path, pid=4242, host="another-host", started="1")
    with pytest.raises(UserInputError, match=f"pid 4242 on another-host.*delete {tmp_path}/exp{LOCK_SUFFIX}"):
        with experiment_lock(spec_in(tmp_path)):
            pass


def test_an_unreadable_lock_is_refused_naming_the_file(tmp_path):
    (tmp_path / f"exp{LOCK_SUFFIX}").write_text("{")
    with pytest.raises(UserInputError, match=f"name: {tmp_path}/exp{LOCK_SUFFIX} holds no readable lock"):
        with experiment_lock(spec_in(tmp_path)):
            pass


@pytest.mark.slow
def test_a_second_driver_of_a_running_experiment_refuses_and_the_first_finishes(tmp_path, data_dir):
    """RAY_ADDRESS=local: each driver would start its own Ray (never the machine's); the second
    refuses before it connects to any."""
    env = {**os.environ, "RAY_ADDRESS": "local", "GANTUNE_DATA_DIR": str(data_dir)}
    command = [*RUN, "--space", "smoke", "--num-samples", "2", "--epochs", "2", "--limit", "640", "--eval-samples",
               "200", "--max-concurrent", "1", "--storage-path", str(tmp_path), "--name", "same"]
    log = tmp_path / "first.log"
    first = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "same" / "search-spec.json").exists():  # the first is past its checks
            assert first.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the first driver did not start its search"
            time.sleep(0.2)
        second = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert first.poll() is None, "the first driver ended before the second was refused: nothing was tested"
        assert second.returncode == 2, second.stderr[-3000:]
        [line] = second.stderr.strip().splitlines()
        assert line.startswith("error: name: experiment same in ") and f"(pid {first.pid} on " in line, line
        assert first.wait(timeout=900) == 0, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
    assert not (tmp_path / f"same{LOCK_SUFFIX}").exists()
    trials = load_trials(tmp_path / "same")
    assert len(trials) == 2 and trials["reports"].ge(1).all()
    assert not trials["end_reason"].isin([EndReason.RUNNING, EndReason.PENDING, EndReason.MISSING]).any()
