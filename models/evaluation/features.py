"""The feature network behind FID/KID and the class histograms: a small CNN classifier.

Inception-v3 features are meaningless on 28x28 greyscale clothes and too slow on a CPU, so the
project trains its own classifier on the dataset's training split (as in the original
mode-collapse literature, e.g. the "modes covered" count of Metz et al. 2017). Its penultimate
layer (128 units after ReLU) gives the FID/KID features; its softmax gives class predictions.

A set with fewer than two classes (a folder of faces, one class of anything) has no labels to
learn from, so the same net learns a self-supervised task instead: which of four rotations
(0, 90, 180, 270 degrees) an image was given (Gidaris et al. 2018). Telling them apart needs
the shapes and parts that make an image look right, which is what its features then measure.
No pretrained weights are needed, so it works offline on any square images.

The trained net is cached on disk, keyed by dataset name and a sha256 of the training images,
and written atomically so concurrent Ray trials never read a half-written file. The net for the
full Fashion-MNIST training split ships with the package (`pinned/`) and is used before any
cache: a net trained elsewhere (other CPU thread counts, a GPU) has other weights and so gives
other FIDs, so the pinned one is what makes FIDs on that data comparable between machines.
"""

import hashlib
import math
import os
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.data import Dataset
from models.errors import UserInputError

CACHE_DIR_ENV = "GANTUNE_CACHE_DIR"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "gantune"
PINNED_DIR = Path(__file__).with_name("pinned")  # nets shipped with the package, keyed like the cache
FEATURE_DIM = 128
EXTRACT_BATCH = 500
TRAIN_EPOCHS = 5
TRAIN_BATCH = 128
TRAIN_LR = 2e-3
TRAIN_SEED = 0
ROTATIONS = 4  # the self-supervised task's classes: quarter turns


def resolve_cache_dir(cache_dir=None) -> Path:
    """The argument, else $GANTUNE_CACHE_DIR, else ~/.cache/gantune."""
    return Path(cache_dir or os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR).expanduser()


def data_checksum(images: torch.Tensor) -> str:
    """sha256 over the raw bytes of the (contiguous, CPU) image tensor."""
    return hashlib.sha256(images.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


class FeatureNet(nn.Module):
    """Two conv blocks (conv-BN-ReLU-maxpool), a 128-unit FC layer, and a linear class head."""

    def __init__(self, channels: int, image_size: int, num_classes: int, width: int = 16):
        super().__init__()
        self.arch = dict(channels=channels, image_size=image_size, num_classes=num_classes, width=width)
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(True),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * width * (image_size // 4) ** 2, FEATURE_DIM), nn.ReLU(True))
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images))

    @torch.no_grad()
    def features_and_probs(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate activations and class probabilities, in batches, in eval mode, on CPU."""
        self.eval()
        device = next(self.parameters()).device
        feats, probs = [], []
        for start in range(0, len(images), EXTRACT_BATCH):
            hidden = self.body(images[start:start + EXTRACT_BATCH].to(device))
            feats.append(hidden.cpu())
            probs.append(F.softmax(self.head(hidden), dim=1).cpu())
        return torch.cat(feats), torch.cat(probs)


def is_labelled(data: Dataset) -> bool:
    """Whether the net learns the data's classes (two or more), else the rotation task."""
    return data.num_classes >= 2


def head_size(data: Dataset) -> int:
    return data.num_classes if is_labelled(data) else ROTATIONS


def rotated(images: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image turned by a random number of quarter turns, and that number as its label."""
    turns = torch.randint(0, ROTATIONS, (len(images),), generator=g)
    out = images.clone()
    for k in range(1, ROTATIONS):
        out[turns == k] = torch.rot90(images[turns == k], k, dims=(2, 3))
    return out, turns


def task(data: Dataset, images: torch.Tensor, labels: torch.Tensor,
         g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The (input, target) pairs the net learns: the class labels, or the rotation task's."""
    return (images, labels) if is_labelled(data) else rotated(images, g)


def accuracy(net: FeatureNet, data: Dataset) -> float:
    """Test accuracy on the net's task (for the rotation task, over one seeded turn per image)."""
    images, labels = task(data, data.images, data.labels, torch.Generator().manual_seed(TRAIN_SEED))
    _, probs = net.features_and_probs(images)
    return float((probs.argmax(1) == labels).float().mean())


def train_feature_net(train: Dataset, test: Dataset, device="cpu", epochs: int = TRAIN_EPOCHS) -> tuple[FeatureNet, float]:
    """Adam with a cosine schedule, random 1-pixel shifts; returns the net and its test accuracy."""
    if not is_labelled(train) and train.images.shape[-1] != train.images.shape[-2]:
        raise UserInputError(f"dataset: {train.name} has no classes, so its feature net learns rotations, which "
                             f"needs square images; got {train.images.shape[-2]} x {train.images.shape[-1]}")
    torch.manual_seed(TRAIN_SEED)
    net = FeatureNet(train.images.shape[1], train.images.shape[-1], head_size(train)).to(device)
    steps_per_epoch = math.ceil(len(train) / TRAIN_BATCH)
    opt = torch.optim.Adam(net.parameters(), lr=TRAIN_LR)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, TRAIN_LR, total_steps=epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(TRAIN_SEED)
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(train), generator=g)
        for start in range(0, len(train), TRAIN_BATCH):
            idx = order[start:start + TRAIN_BATCH]
            x, y = task(train, _random_shift(train.images[idx], g), train.labels[idx], g)
            loss = F.cross_entropy(net(x.to(device)), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
    return net, accuracy(net, test)


def _random_shift(images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Shift the whole batch by up to one pixel each way (light augmentation against overfitting)."""
    dx, dy = (int(v) for v in torch.randint(-1, 2, (2,), generator=g))
    return torch.roll(images, shifts=(dy, dx), dims=(2, 3))


def feature_net_path(cache_dir: Path, name: str, checksum: str) -> Path:
    return cache_dir / f"featurenet-{name}-{checksum[:16]}.pt"


def load_or_train_feature_net(train: Dataset, test: Dataset, cache_dir=None,
                              device="cpu") -> tuple[FeatureNet, dict]:
    """The pinned or cached net for this training data, or a freshly trained (and cached) one.

    A stored file is reused only when its stored checksum and architecture match; anything
    else (stale, corrupt, other data) is retrained and overwritten, never silently reused.
    Returns the net and its metadata (checksum, test_accuracy, arch, retrained).
    """
    checksum = data_checksum(train.images)
    expected_arch = FeatureNet(train.images.shape[1], train.images.shape[-1], head_size(train)).arch
    stored = stored_feature_net(train.name, checksum, expected_arch, cache_dir)
    if stored:
        _, contents = stored
        net = FeatureNet(**contents["arch"])
        net.load_state_dict(contents["state_dict"])
        meta = {k: contents[k] for k in ("checksum", "test_accuracy", "arch")}
        return net.to(device).eval(), {**meta, "retrained": False}
    net, test_accuracy = train_feature_net(train, test, device)
    meta = {"checksum": checksum, "test_accuracy": test_accuracy, "arch": net.arch}
    state = {k: v.cpu() for k, v in net.state_dict().items()}
    atomic_torch_save({**meta, "state_dict": state}, feature_net_path(resolve_cache_dir(cache_dir), train.name, checksum))
    return net.eval(), {**meta, "retrained": True}


def stored_feature_net(name: str, checksum: str, arch: dict | None, cache_dir=None) -> tuple[Path, dict] | None:
    """(path, contents) of the first usable net for this data: the pinned one, else the cached one.
    Usable means its checksum matches, it has weights, and (unless `arch` is None) its architecture."""
    for folder in (PINNED_DIR, resolve_cache_dir(cache_dir)):
        path = feature_net_path(folder, name, checksum)
        stored = _read_cache(path)
        if (stored and stored.get("checksum") == checksum and "state_dict" in stored
                and (arch is None or stored.get("arch") == arch)):
            return path, stored
    return None


def feature_net_identity(train: Dataset, cache_dir=None) -> dict | None:
    """What names the feature space of FIDs measured against `train`, so a report can say which net
    its numbers come from: the pinned or cached net's file, the sha256 of its training images (the
    key) and of its weights (names and tensors in state_dict order, as the evaluator's reference
    cache hashes them), its task (classes, or rotations for a set without them), its test accuracy
    on that task and its architecture. None when no net for this data is stored here."""
    checksum = data_checksum(train.images)
    stored = stored_feature_net(train.name, checksum, None, cache_dir)
    if not stored:
        return None
    path, contents = stored
    weights = hashlib.sha256()
    for name, tensor in contents["state_dict"].items():
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return {"path": str(path), "data_sha256": checksum, "weights_sha256": weights.hexdigest(),
            "task": "classes" if is_labelled(train) else "rotations",
            "test_accuracy": float(contents["test_accuracy"]), "arch": dict(contents["arch"])}


def _read_cache(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a corrupt or foreign file is retrained over, like a stale one
        return None
    return cached if isinstance(cached, dict) else None  # a valid torch file of another shape, likewise


def atomic_torch_save(obj, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then os.replace onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
