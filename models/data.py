"""Datasets as whole in-memory tensors, and device-resident shuffled batches.

Every loader returns a `Dataset`: float32 images in [0, 1] shaped N x C x H x W (or N x 2
points for the toy sets) plus int64 labels. Trainers move the tensor to their device once
and draw index batches from it, so the hot loop never waits on DataLoader workers.
"""

import math
import os
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from models.errors import UserInputError, require_choice
from models.toy_data import TOY_SETS

DATA_DIR_ENV = "GANTUNE_DATA_DIR"
DEFAULT_DATA_DIR = Path.home() / ".cache" / "gantune" / "datasets"
MNIST_OFFLINE_DIR = "mnist-test10k"
MNIST_OFFLINE_TRAIN = 8000  # of the 10k real test images when only those are on disk
HELDOUT_SHARE = 0.1  # of a user's folder or IDX pair, kept out of training as its held-out split
USER_DATA_OPTIONS = ("image_size", "idx_images", "idx_labels")  # load_dataset's options for a user's own images
HELDOUT_SEED = 0  # the split is the same for every run and seed: the evaluator's reference depends on it

_IDX_IMAGES_MAGIC = 0x00000803
_IDX_LABELS_MAGIC = 0x00000801
MNIST_FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),  # torchvision's raw layout
               False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


@dataclass
class Dataset:
    name: str
    images: torch.Tensor  # float32, [0, 1] for image sets; raw coordinates for toy sets
    labels: torch.Tensor  # int64
    num_classes: int

    @property
    def shape(self) -> tuple:
        return tuple(self.images.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.images.dim() == 4

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, n: int, seed: int = 0) -> "Dataset":
        """A fixed random subset of n examples (for quick runs and benchmarks)."""
        if n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return Dataset(self.name, self.images[idx], self.labels[idx], self.num_classes)


def resolve_data_dir(data_dir=None) -> Path:
    """--data-dir, else $GANTUNE_DATA_DIR, else ~/.cache/gantune/datasets."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser()


def load_dataset(name: str, data_dir=None, train: bool = True, image_size: int | None = None,
                 download: bool = True, idx_images=None, idx_labels=None,
                 toy_size: int = 20000, seed: int = 0) -> Dataset:
    """Load a whole split into memory. `image_size` resizes (cifar10, image_folder, idx)."""
    require_choice("dataset", name, DATASETS)
    data = DATASETS[name](root=resolve_data_dir(data_dir), train=train, download=download, image_size=image_size,
                          idx_images=idx_images, idx_labels=idx_labels, toy_size=toy_size, seed=seed)
    if image_size and data.is_image and data.images.shape[-1] != image_size:
        require_memory("image_size", len(data) * data.images.shape[1] * image_size ** 2 * 4,
                       f"{len(data)} images of {image_size} x {image_size}")
        data.images = torch.nn.functional.interpolate(
            data.images, size=(image_size, image_size), mode="bilinear", antialias=True,
            align_corners=False).clamp_(0, 1)
    return data


def heldout_split(data: Dataset, train: bool) -> Dataset:
    """A set that comes as one pile (a folder, an IDX pair) split in two: a fixed random
    HELDOUT_SHARE of it (at least one image) is the held-out split, the rest the training split.
    The evaluator's feature net is tested, and memorisation measured, on images training never saw."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(HELDOUT_SEED))
    n_heldout = max(1, math.ceil(HELDOUT_SHARE * len(data)))
    if len(data) <= n_heldout:
        raise UserInputError(f"dataset: {data.name} holds {len(data)} image(s); it needs at least 2, "
                             f"{HELDOUT_SHARE:.0%} of them held out for evaluation")
    idx = order[n_heldout:] if train else order[:n_heldout]
    return Dataset(data.name, data.images[idx], data.labels[idx], data.num_classes)


def _idx(idx_images, idx_labels, train: bool) -> Dataset:
    if not idx_images or not idx_labels:
        raise UserInputError("idx: pass both --idx-images and --idx-labels (IDX file paths)")
    data = Dataset("idx", read_idx_images(idx_images), read_idx_labels(idx_labels), 0)
    data.num_classes = int(data.labels.max()) + 1
    _check_same_length(data, idx_images)
    return heldout_split(data, train)


def to_gan_range(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1], the range of a tanh generator."""
    return images * 2 - 1


def read_idx_images(path) -> torch.Tensor:
    array = _read_idx(path, _IDX_IMAGES_MAGIC, ndim=3)
    return torch.from_numpy(array).float().div_(255).unsqueeze(1)


def read_idx_labels(path) -> torch.Tensor:
    return torch.from_numpy(_read_idx(path, _IDX_LABELS_MAGIC, ndim=1)).long()


def _read_idx(path, magic: int, ndim: int) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"IDX file {path}: not found")
    raw = path.read_bytes()
    header = 4 + 4 * ndim
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
        raise UserInputError(f"IDX file {path}: wrong magic number {found!r}, expected {magic:#010x}")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if 0 in dims:
        raise UserInputError(f"IDX file {path}: holds no data, header dims {dims}")
    if len(raw) != header + math.prod(dims):
        raise UserInputError(f"IDX file {path}: truncated or padded, header says {dims} "
                             f"({header + math.prod(dims)} bytes), file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def require_memory(field: str, needed: int, what: str) -> None:
    """Refuse a tensor larger than this machine's memory before allocating it: torch would try, and
    fail with a traceback or take the machine into swap."""
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): nothing to compare with
        return
    if needed > available:
        raise UserInputError(f"{field}: {what} need {needed / 1e9:.3g} GB as float32; this machine has "
                             f"{available / 1e9:.3g} GB")


def _check_same_length(data: Dataset, where) -> None:
    if len(data.images) != len(data.labels):
        raise UserInputError(f"{where}: {len(data.images)} images but {len(data.labels)} labels")


def _missing(name: str, root: Path, expected: str) -> UserInputError:
    return UserInputError(
        f"{name}: no data in {root} (looked for {expected}) and download failed or is off; "
        f"pass --data-dir DIR (or set {DATA_DIR_ENV}) pointing at a folder that holds it")


def _raw_idx_pair(name: str, folder: Path, train: bool) -> Dataset | None:
    """The split from MNIST-style raw IDX files in `folder`, read and checked by `_read_idx` (a bad
    file is one error naming it); None when neither file is there."""
    images, labels = (folder / file for file in MNIST_FILES[train])
    if not images.exists() and not labels.exists():
        return None
    data = Dataset(name, read_idx_images(images), read_idx_labels(labels), 10)
    _check_same_length(data, images)
    return data


def _downloaded(name: str, cls_name: str, root: Path, train: bool) -> Dataset | None:
    """torchvision's download of an MNIST-style set into root/CLS/raw, read back as raw IDX; None on failure."""
    from torchvision import datasets
    try:
        getattr(datasets, cls_name)(root=str(root), train=train, download=True)
    except Exception:  # no network, a proxy, a checksum: torchvision raises many kinds
        return None
    return _raw_idx_pair(name, root / cls_name / "raw", train)


def _fashion_mnist(root: Path, train: bool, download: bool) -> Dataset:
    """Fashion-MNIST from torchvision's raw files (FashionMNIST/raw/), downloaded when missing."""
    found = _raw_idx_pair("fashion_mnist", root / "FashionMNIST" / "raw", train)
    if found is None and download:
        found = _downloaded("fashion_mnist", "FashionMNIST", root, train)
    if found is None:
        raise _missing("fashion_mnist", root, "FashionMNIST/raw/*-ubyte in torchvision's layout")
    return found


def _cifar10(root: Path, train: bool, download: bool) -> Dataset:
    from torchvision import datasets
    try:
        ds = datasets.CIFAR10(root=str(root), train=train, download=False)
    except RuntimeError:
        if not download:
            raise _missing("cifar10", root, "cifar-10-batches-py/ in torchvision's layout") from None
        try:
            ds = datasets.CIFAR10(root=str(root), train=train, download=True)
        except Exception:
            raise _missing("cifar10", root, "cifar-10-batches-py/ in torchvision's layout") from None
    images = torch.as_tensor(np.asarray(ds.data)).permute(0, 3, 1, 2)
    labels = torch.as_tensor(np.asarray(ds.targets)).long()
    return Dataset("cifar10", images.float().div_(255).contiguous(), labels, 10)


def _mnist(root: Path, train: bool, download: bool) -> Dataset:
    """MNIST from torchvision's raw files; offline, the real 10k test split alone, split 8k train / 2k test."""
    found = _raw_idx_pair("mnist", root / "MNIST" / "raw", train)
    if found is not None:
        return found
    offline = root / MNIST_OFFLINE_DIR
    if (offline / "t10k-images-idx3-ubyte").exists() or (offline / "t10k-labels-idx1-ubyte").exists():
        test = _raw_idx_pair("mnist", offline, train=False)
        part = slice(0, MNIST_OFFLINE_TRAIN) if train else slice(MNIST_OFFLINE_TRAIN, None)
        return Dataset("mnist", test.images[part].contiguous(), test.labels[part].contiguous(), 10)
    found = _downloaded("mnist", "MNIST", root, train) if download else None
    if found is None:
        raise _missing("mnist", root, f"MNIST/raw/ or {MNIST_OFFLINE_DIR}/t10k-*-idx*-ubyte")
    return found


def _folder_samples(root: Path) -> tuple[list[tuple[str, int]], int]:
    """(path, label) of every image and the class count: torchvision's ImageFolder layout (one
    sub-folder per class), or, with no sub-folders, the images in `root` itself as one unlabelled
    class (CelebA's layout)."""
    from torchvision import datasets
    from torchvision.datasets.folder import IMG_EXTENSIONS
    if not root.is_dir():
        raise UserInputError(f"image_folder: {root} is not a directory (of images, or of class sub-folders)")
    if not any(entry.is_dir() for entry in root.iterdir()):
        files = sorted(str(f) for f in root.iterdir() if f.suffix.lower() in IMG_EXTENSIONS)
        if not files:
            raise UserInputError(f"image_folder: {root} holds no images ({', '.join(IMG_EXTENSIONS)}) and no "
                                 "class sub-folders")
        return [(f, 0) for f in files], 1
    try:
        ds = datasets.ImageFolder(str(root))
    except (FileNotFoundError, RuntimeError) as err:
        raise UserInputError(f"image_folder: {root}: {err}") from None
    return ds.samples, len(ds.classes)


def _image_folder(root: Path, image_size: int, train: bool) -> Dataset:
    """A folder of images (see _folder_samples), every image resized and centre-cropped, then split
    by heldout_split. An image that cannot be read (corrupt, not an image, or a decompression bomb:
    more pixels than PIL's limit) is refused, naming the file, rather than skipped: a silently
    smaller training set would change the data, and with it the FIDs, from one run to the next."""
    from PIL import Image
    from torchvision import transforms
    from torchvision.datasets.folder import default_loader
    samples, num_classes = _folder_samples(root)
    require_memory("image_size", len(samples) * 3 * image_size ** 2 * 4,
                   f"{len(samples)} images of {image_size} x {image_size}")
    tf = transforms.Compose([transforms.Resize(image_size), transforms.CenterCrop(image_size),
                             transforms.ToTensor()])
    images = []
    for path, _ in samples:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)  # past PIL's pixel limit
                images.append(tf(default_loader(path)))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise UserInputError(f"image_folder: {path} is not a readable image ({reason}); remove or replace "
                                 "it") from None
    labels = torch.tensor([label for _, label in samples], dtype=torch.long)
    return heldout_split(Dataset("image_folder", torch.stack(images), labels, num_classes), train)


def _toy(name: str, toy_size: int, seed: int, train: bool, **_) -> Dataset:
    """A 2-D toy set of models.toy_data: toy_size points; the held-out split is a fresh draw (the next seed)."""
    toy = TOY_SETS[name]
    points, labels = toy.draw(toy_size, seed + (0 if train else 1))
    return Dataset(name, points, labels, toy.num_regions)


# name -> loader(root, train, download, image_size, idx_images, idx_labels, toy_size, seed); a loader
# reads the options it needs. load_dataset resizes to image_size afterwards where the loader did not.
DATASETS = {
    "mnist": lambda root, train, download, **_: _mnist(root, train, download),
    "fashion_mnist": lambda root, train, download, **_: _fashion_mnist(root, train, download),
    "idx": lambda idx_images, idx_labels, train, **_: _idx(idx_images, idx_labels, train),
    "cifar10": lambda root, train, download, **_: _cifar10(root, train, download),
    "image_folder": lambda root, image_size, train, **_: _image_folder(root, image_size or 64, train),
    **{name: partial(_toy, name) for name in TOY_SETS},  # toy2d_ring, toy2d_moons, toy2d_semicircles
}


class DeviceBatches:
    """Shuffled minibatches drawn by index from a tensor that already lives on the device.

    The order of epoch e depends only on (seed, e), so batch number `step` is the same batch
    whether a run went straight through or was resumed from a checkpoint mid-epoch.
    """

    def __init__(self, data: torch.Tensor, batch_size: int, seed: int):
        if batch_size > len(data):
            raise UserInputError(f"batch_size: {batch_size} is larger than the dataset ({len(data)} examples)")
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self._epoch, self._order = None, None

    def __len__(self) -> int:
        """Full batches per epoch (the ragged tail is dropped)."""
        return len(self.data) // self.batch_size

    def batch(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, len(self))
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = torch.randperm(len(self.data), generator=g).to(self.data.device)
            self._epoch = epoch
        return self.data[self._order[i * self.batch_size:(i + 1) * self.batch_size]]


def from_gan_range(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], the range the evaluator and image files expect."""
    return (images + 1) / 2
