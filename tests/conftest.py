"""Shared fixtures: the real datasets beside the repo (or wherever GANTUNE_DATA_DIR points)."""

import os
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
# Under pytest-xdist (`make test`, two workers by default) each worker's torch, and the CLIs and Ray trials it
# starts, get an equal share of the cores: two workers each running torch at every core's worth of
# OpenMP threads spent more time contending than computing (measured on 2 cores: 62 CPU-minutes and
# 52 minutes of wall time, against 36 and 45 for the serial suite). An OMP_NUM_THREADS you set wins.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))


def read_result_json(path: Path) -> pd.DataFrame:
    """Every line of a Ray result.json; trial ids stay strings (pandas would read 9e631077 as inf)."""
    return pd.read_json(path, lines=True, dtype={"trial_id": str})


@pytest.fixture(scope="module")
def local_ray():
    """A private local Ray (never another process's cluster) for one test module, started from the
    repository root: Ray gives its workers the driver's current directory on their path, which is
    how trials import examples.tiny_gan and the test modules' own trainers."""
    import ray
    before = os.getcwd()
    os.chdir(REPO)
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    os.chdir(before)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ.get("GANTUNE_DATA_DIR") or REPO.parent / "shared" / "datasets")
    if not (path / "FashionMNIST" / "raw").is_dir():
        pytest.fail(f"real datasets not found in {path}; set GANTUNE_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def fashion_train(data_dir):
    from models.data import load_dataset
    return load_dataset("fashion_mnist", data_dir, train=True, download=False)


@pytest.fixture(scope="session")
def fashion_test(data_dir):
    from models.data import load_dataset
    return load_dataset("fashion_mnist", data_dir, train=False, download=False)
