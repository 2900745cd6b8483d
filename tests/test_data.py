"""Datasets on the real files beside the repo: shapes, ranges, label counts, and IDX errors."""

import shutil

import pytest
import torch

from models.data import HELDOUT_SEED, DeviceBatches, load_dataset, to_gan_range
from models.errors import UserInputError


def test_fashion_mnist_train_split(fashion_train):
    assert fashion_train.images.shape == (60000, 1, 28, 28)
    assert fashion_train.images.dtype == torch.float32
    assert fashion_train.images.min() == 0 and fashion_train.images.max() == 1
    assert fashion_train.images.mean().item() == pytest.approx(0.2860, abs=1e-4)  # the dataset README's figure
    assert torch.bincount(fashion_train.labels).tolist() == [6000] * 10


def test_fashion_mnist_test_split(fashion_test):
    assert fashion_test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(fashion_test.labels).tolist() == [1000] * 10


def test_gan_range_is_minus_one_to_one(fashion_test):
    scaled = to_gan_range(fashion_test.images[:100])
    assert scaled.min() == -1 and scaled.max() == 1


def read_raw_idx(path, header: int) -> torch.Tensor:
    """An IDX file's payload as bytes, read here without models.data: the split is checked against the file."""
    return torch.frombuffer(bytearray(path.read_bytes()[header:]), dtype=torch.uint8)


def test_mnist_offline_splits_the_real_test_set(data_dir):
    """Offline, MNIST is the real 10k test split (the datasets README): its first 8,000 images train,
    its last 2,000 are held out, in file order."""
    train = load_dataset("mnist", data_dir, train=True, download=False)
    test = load_dataset("mnist", data_dir, train=False, download=False)
    assert len(train) == 8000 and len(test) == 2000
    both = torch.cat([train.images, test.images])
    assert both.mean().item() == pytest.approx(0.1325, abs=1e-4)  # the dataset README's figure
    assert set(torch.unique(train.labels).tolist()) == set(range(10))
    raw = data_dir / "mnist-test10k"
    pixels = read_raw_idx(raw / "t10k-images-idx3-ubyte", header=16).view(10000, 1, 28, 28).float() / 255
    labels = read_raw_idx(raw / "t10k-labels-idx1-ubyte", header=8).long()
    assert torch.equal(train.images, pixels[:8000]) and torch.equal(test.images, pixels[8000:])
    assert torch.equal(train.labels, labels[:8000]) and torch.equal(test.labels, labels[8000:])


def test_idx_pair_reads_like_the_named_dataset_split_into_training_and_heldout(data_dir, fashion_test):
    """An IDX pair is one pile: a fixed random tenth of it is held out, the rest trains."""
    raw = data_dir / "FashionMNIST" / "raw"
    files = dict(idx_images=raw / "t10k-images-idx3-ubyte", idx_labels=raw / "t10k-labels-idx1-ubyte")
    train, heldout = load_dataset("idx", **files), load_dataset("idx", train=False, **files)
    order = torch.randperm(10_000, generator=torch.Generator().manual_seed(HELDOUT_SEED))
    for split, part in ((heldout, order[:1000]), (train, order[1000:])):
        assert torch.equal(split.images, fashion_test.images[part]) and torch.equal(split.labels, fashion_test.labels[part])
        assert split.num_classes == 10


def test_truncated_idx_names_the_file(data_dir, tmp_path):
    bad = tmp_path / "images-idx3-ubyte"
    bad.write_bytes((data_dir / "mnist-test10k" / "t10k-images-idx3-ubyte").read_bytes()[:5000])
    labels = data_dir / "mnist-test10k" / "t10k-labels-idx1-ubyte"
    with pytest.raises(UserInputError, match=f"{bad}.*truncated"):
        load_dataset("idx", idx_images=bad, idx_labels=labels)


def test_wrong_magic_idx_names_the_file(data_dir, tmp_path):
    labels = data_dir / "mnist-test10k" / "t10k-labels-idx1-ubyte"
    with pytest.raises(UserInputError, match=f"{labels}.*magic"):
        load_dataset("idx", idx_images=labels, idx_labels=labels)


def test_missing_data_offline_names_the_directory(tmp_path):
    with pytest.raises(UserInputError, match=f"{tmp_path}.*--data-dir"):
        load_dataset("fashion_mnist", tmp_path, download=False)


def test_unknown_dataset_lists_choices():
    with pytest.raises(UserInputError, match="fashion_mnist"):
        load_dataset("svhn")


def test_resize_to_cifar_size(data_dir):
    data = load_dataset("mnist", data_dir, train=False, image_size=32)
    assert data.images.shape == (2000, 1, 32, 32) and 0 <= data.images.min() and data.images.max() <= 1


def test_image_folder_reads_class_subfolders(tmp_path, fashion_test):
    from torchvision.utils import save_image
    for cls in range(2):
        (tmp_path / f"class{cls}").mkdir()
        for i in range(3):
            save_image(fashion_test.images[cls * 10 + i], tmp_path / f"class{cls}" / f"{i}.png")
    data = load_dataset("image_folder", tmp_path, image_size=32)
    heldout = load_dataset("image_folder", tmp_path, train=False, image_size=32)
    assert data.images.shape == (5, 3, 32, 32) and data.num_classes == heldout.num_classes == 2
    assert len(heldout) == 1 and not any(torch.equal(heldout.images[0], x) for x in data.images)


@pytest.mark.parametrize("name,modes", [("toy2d_ring", 8), ("toy2d_moons", 2)])
def test_toy_sets(name, modes):
    data = load_dataset(name, toy_size=4000)
    assert data.images.shape == (4000, 2) and data.num_classes == modes
    assert torch.bincount(data.labels).min() > 4000 / modes * 0.8


def test_device_batches_cover_each_epoch_once_in_a_seeded_order():
    data = torch.arange(100).float()
    batches = DeviceBatches(data, batch_size=10, seed=3)
    epoch0 = torch.cat([batches.batch(i) for i in range(10)])
    assert sorted(epoch0.tolist()) == list(range(100))
    again = DeviceBatches(data, batch_size=10, seed=3)
    assert torch.equal(again.batch(13), batches.batch(13))  # same step, same batch, whatever came before
    assert not torch.equal(batches.batch(0), batches.batch(10))  # epochs are reshuffled
