"""Your own images: a folder with one class or none (CelebA's layout) is split into training and
held-out images, gets a feature net that learnt rotations instead of classes, is evaluated on
feature-space signals alone, and is tuned end to end through tuner/run.py on a real local Ray."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.utils import save_image

from models.data import HELDOUT_SHARE, load_dataset
from models.evaluation import Evaluator
from models.evaluation.collapse import DUPLICATE_SHARE_MAX, MEMORIZED_SHARE_MAX, RECALL_MIN
from tests.conftest import read_result_json
from tuner.analysis import load_trials
from tuner.run import build_parser, main, spec_from_args
from tuner.spec import SearchSpec

SNEAKER = 7  # Fashion-MNIST's class 7: 6,000 training and 1,000 test images
EVAL = 500
CLASS_KEYS = ("coverage", "entropy", "kl_to_labels")


def write_flat_folder(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        save_image(image, folder / f"{i:05d}.png")
    return folder


@pytest.fixture(scope="module")
def sneakers(tmp_path_factory, fashion_train):
    """Every training sneaker as a PNG, flat in one folder: one class, no labels."""
    images = fashion_train.images[fashion_train.labels == SNEAKER]
    return write_flat_folder(tmp_path_factory.mktemp("data") / "sneakers", images), images


@pytest.fixture(scope="module")
def evaluator(sneakers, tmp_path_factory):
    folder, _ = sneakers
    return Evaluator.for_dataset("image_folder", folder, cache_dir=tmp_path_factory.mktemp("cache"),
                                 n_samples=EVAL, image_size=28)


def test_a_flat_folder_is_one_class_split_into_disjoint_training_and_heldout_images(tmp_path, fashion_test):
    folder = write_flat_folder(tmp_path / "flat", fashion_test.images[:40])
    train = load_dataset("image_folder", folder, train=True, image_size=28)
    heldout = load_dataset("image_folder", folder, train=False, image_size=28)
    assert train.num_classes == heldout.num_classes == 1 and (train.labels == 0).all()
    assert (len(train), len(heldout)) == (36, 4) == (40 - 40 * HELDOUT_SHARE, 40 * HELDOUT_SHARE)
    assert train.images.shape[1:] == (3, 28, 28)  # read as RGB, like every folder image
    rows = {tuple(x.flatten().tolist()) for x in train.images} | {tuple(x.flatten().tolist()) for x in heldout.images}
    assert len(rows) == 40  # disjoint, and together every image once
    again = load_dataset("image_folder", folder, train=False, image_size=28)
    assert torch.equal(again.images, heldout.images)  # the same split on every load


def test_the_feature_net_learns_rotations_and_the_verdict_drops_the_class_signals(evaluator, sneakers, fashion_test):
    """Fresh real sneakers (Fashion-MNIST's test split, never in the folder) are healthy by a margin;
    16 sneakers repeated with faint noise are collapsed, training images copied are memorised, and
    neither verdict mentions classes, which a folder without labels does not have."""
    assert evaluator.net.arch["num_classes"] == 4 and not evaluator.labelled
    as_rgb = fashion_test.images[fashion_test.labels == SNEAKER].repeat(1, 3, 1, 1)
    fresh = evaluator.evaluate(as_rgb[:EVAL])
    assert not fresh["collapsed"] and not fresh["memorized"]
    assert not set(CLASS_KEYS) & set(fresh)
    assert fresh["recall"] > 5 * RECALL_MIN
    assert fresh["duplicate_share"] < DUPLICATE_SHARE_MAX / 2 and fresh["memorized_share"] < MEMORIZED_SHARE_MAX / 2

    g = torch.Generator().manual_seed(0)
    few = as_rgb[torch.arange(EVAL) % 16]
    few = (few + 0.01 * torch.randn(few.shape, generator=g)).clamp(0, 1)
    collapsed = evaluator.evaluate(few)
    assert collapsed["collapsed"] and not collapsed["diverged"] and not collapsed["memorized"]
    assert collapsed["duplicate_share"] > 2 * DUPLICATE_SHARE_MAX
    assert not any("class" in reason for reason in collapsed["reasons"])

    _, images = sneakers
    copied = evaluator.evaluate(images[:EVAL].repeat(1, 3, 1, 1))  # most of them training images
    assert copied["memorized"] and copied["collapsed"]
    assert copied["memorized_share"] > 2 * MEMORIZED_SHARE_MAX
    assert collapsed["fid"] > fresh["fid"] and np.isfinite(fresh["fid"])


def test_idx_flags_reach_the_spec_as_absolute_paths(data_dir, monkeypatch, tmp_path):
    """tuner/run.py --dataset idx takes its two files; given relative, they are kept absolute, so a
    --resume from another directory reads the same files."""
    raw = data_dir / "FashionMNIST" / "raw"
    monkeypatch.chdir(raw)
    args = build_parser().parse_args(["--space", "smoke", "--dataset", "idx", "--idx-images", "t10k-images-idx3-ubyte",
                                      "--idx-labels", "t10k-labels-idx1-ubyte", "--storage-path", str(tmp_path)])
    spec = spec_from_args(args)
    for key, name in (("idx_images", "t10k-images-idx3-ubyte"), ("idx_labels", "t10k-labels-idx1-ubyte")):
        path = Path(spec.data_options[key])
        assert path.is_absolute() and path.samefile(raw / name)  # raw may reach the files through a symlink
    assert spec.image_size is None
    assert SearchSpec.from_json(spec.to_json()).data_options == spec.data_options
    train = load_dataset("idx", **spec.data_options)
    assert len(train) == 9000 and train.num_classes == 10


@pytest.mark.slow
def test_a_one_class_folder_is_tuned_end_to_end(local_ray, sneakers, tmp_path):
    folder, _ = sneakers
    main(["--space", "smoke", "--dataset", "image_folder", "--data-dir", str(folder), "--image-size", "28",
          "--num-samples", "2", "--epochs", "1", "--eval-samples", str(EVAL), "--fixed", "width=16",
          "--storage-path", str(tmp_path), "--name", "folder"])
    experiment = tmp_path / "folder"
    trials = list(experiment.glob("train_trial_*"))
    assert len(trials) == 2
    for trial in trials:
        rows = read_result_json(trial / "result.json")
        assert rows["fid"].gt(0).all() and rows["recall"].between(0, 1).all()
        assert rows["duplicate_share"].notna().all() and rows["memorized_share"].notna().all()
        assert not set(CLASS_KEYS) & set(rows)  # the verdict came from the feature-space signals alone
        assert rows["collapsed"].isin([True, False]).all()
    ranked = load_trials(experiment)
    assert sorted(ranked["rank"]) == [1, 2] and set(ranked["dataset"]) == {"image_folder"}
    spec = json.loads((experiment / "search-spec.json").read_text())
    assert spec["image_size"] == 28 and spec["data_dir"] == str(folder)
    report = (experiment / "report" / "report.md").read_text()
    assert "--dataset image_folder" in report and "--image-size 28" in report  # the retrain command
    assert "image_folder: no classes, so trained to tell 4 rotations apart; test accuracy" in report
