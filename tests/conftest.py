"""Shared fixtures: the real datasets beside the repo (or wherever GANTUNE_DATA_DIR points)."""

import os
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def read_result_json(path: Path) -> pd.DataFrame:
    """Every line of a Ray result.json; trial ids stay strings (pandas would read 9e631077 as inf)."""
    return pd.read_json(path, lines=True, dtype={"trial_id": str})


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
