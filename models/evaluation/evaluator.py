"""The Evaluator: cached feature net + cached real-data statistics -> one metrics dict.

All caching lives here and in the feature-net loader; the maths is in fid.py and collapse.py.
An Evaluator is built once per dataset, pickled into Ray's object store, and shared by trials.
"""

import hashlib
import math

import numpy as np
import torch

from models.data import Dataset, load_dataset
from models.errors import UserInputError
from models.evaluation import collapse
from models.evaluation.features import (FeatureNet, atomic_torch_save, data_checksum,
                                        load_or_train_feature_net, resolve_cache_dir)
from models.evaluation.fid import feature_statistics, frechet_distance, kid, require_enough_samples

REAL_SAMPLE = 10_000  # training features kept for KID, the FID floor and the diversity baseline
KID_SUBSETS = 20
KID_SUBSET_SIZE = 1000
RANGE_TOLERANCE = 1e-5  # float round-off allowed outside [0, 1]
SEED = 0
REFERENCE_FORMAT = 2  # bump when the cached reference gains or changes fields


def net_checksum(net: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class Evaluator:
    """FID/KID against the real training data, plus the mode-collapse detector."""

    def __init__(self, net: FeatureNet, image_shape: tuple, reference: dict):
        self.net = net.eval()
        self.image_shape = tuple(image_shape)
        self.mu = reference["mu"].numpy()
        self.sigma = reference["sigma"].numpy()
        self.label_distribution = reference["label_distribution"].numpy()
        self.real_diversity = float(reference["real_diversity"])
        self.real_roughness = float(reference["real_roughness"])
        self.real_features = reference["real_features"].numpy()
        self.heldout_features = reference["heldout_features"].numpy()
        self._floors: dict[int, float] = {}

    @classmethod
    def for_dataset(cls, name: str, data_dir=None, cache_dir=None, device="cpu",
                    n_samples: int = 2000) -> "Evaluator":
        """Load (or train and cache) the feature net and reference statistics for a dataset;
        precompute the FID floor for `n_samples` generated images."""
        train = load_dataset(name, data_dir, train=True)
        heldout = load_dataset(name, data_dir, train=False)
        if not train.is_image or train.num_classes < 2:
            raise UserInputError(f"dataset: {name!r} has no image classes; the evaluator needs a labelled image set")
        net, meta = load_or_train_feature_net(train, heldout, cache_dir, device)
        reference = load_or_compute_reference(net, train, heldout, meta["checksum"], cache_dir)
        evaluator = cls(net, train.shape, reference)
        evaluator.fid_floor(n_samples)
        return evaluator

    def to(self, device) -> "Evaluator":
        self.net.to(device)
        return self

    def fid_floor(self, n: int) -> float:
        """FID between two disjoint real samples of n images each (held-out vs training):
        what a perfect generator scores at this sample size. Capped at the held-out size."""
        n = min(n, len(self.heldout_features), len(self.real_features))
        if n not in self._floors:
            rng = np.random.default_rng(SEED)
            heldout = self.heldout_features[rng.choice(len(self.heldout_features), n, replace=False)]
            train = self.real_features[rng.choice(len(self.real_features), n, replace=False)]
            self._floors[n] = frechet_distance(*feature_statistics(heldout), *feature_statistics(train))
        return self._floors[n]

    def evaluate(self, images: torch.Tensor, history=None) -> dict:
        """Metrics for generated images in [0, 1] (N x C x H x W, like the dataset).

        Non-finite images are a result, not an error: fid/kid/kl are inf, coverage, entropy
        and diversity 0, and the verdict is diverged (and collapsed).
        """
        images = self._check_images(images)
        floor = self.fid_floor(len(images))
        if not torch.isfinite(images).all():
            verdict = collapse.detect_collapse(0.0, 0.0, math.inf, 0.0, non_finite_images=True, history=history)
            return {"fid": math.inf, "fid_floor": floor, "kid": math.inf, "coverage": 0.0,
                    "entropy": 0.0, "kl_to_labels": math.inf, "diversity": 0.0, **verdict}
        features, probs = self.net.features_and_probs(images)
        features, probs = features.double().numpy(), probs.double().numpy()
        num_classes = len(self.label_distribution)
        histogram = collapse.class_histogram(probs, num_classes)
        covered = collapse.coverage(histogram, self.label_distribution)
        entropy = collapse.normalized_entropy(histogram)
        kl = collapse.kl_to_labels(histogram, self.label_distribution)
        diversity = collapse.mean_pairwise_distance(features, seed=SEED) / self.real_diversity
        verdict = collapse.detect_collapse(covered / num_classes, entropy, kl, diversity,
                                           collapse.roughness(images) / self.real_roughness,
                                           collapse.blank_fraction(images), history=history)
        kid_mean, _ = kid(features, self.real_features, KID_SUBSETS, KID_SUBSET_SIZE, SEED)
        return {"fid": frechet_distance(*feature_statistics(features), self.mu, self.sigma),
                "fid_floor": floor, "kid": kid_mean, "coverage": float(covered), "entropy": entropy,
                "kl_to_labels": kl, "diversity": diversity, **verdict}

    def _check_images(self, images) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise UserInputError(f"images: expected a torch.Tensor, got {type(images).__name__}")
        if images.dim() != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise UserInputError(f"images: expected shape N x {' x '.join(map(str, self.image_shape))} "
                                 f"(like the dataset), got {tuple(images.shape)}")
        require_enough_samples(len(images), len(self.mu), "images")
        images = images.detach().float().cpu()
        finite = images[torch.isfinite(images)]
        if len(finite) and (finite.min() < -RANGE_TOLERANCE or finite.max() > 1 + RANGE_TOLERANCE):
            raise UserInputError(f"images: values must be in [0, 1], got [{finite.min():.3g}, {finite.max():.3g}]; "
                                 f"convert generator output in [-1, 1] with models.data.from_gan_range")
        return images.clamp(0, 1)


def load_or_compute_reference(net: FeatureNet, train: Dataset, heldout: Dataset, train_checksum: str,
                              cache_dir=None) -> dict:
    """Real-data statistics for this net and data, from the cache when every checksum matches."""
    key = {"format": REFERENCE_FORMAT, "train_checksum": train_checksum, "heldout_checksum": data_checksum(heldout.images),
           "net_checksum": net_checksum(net)}
    path = resolve_cache_dir(cache_dir) / f"reference-{train.name}-{train_checksum[:16]}.pt"
    if path.is_file():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # corrupt or foreign: recompute over it
            cached = {}
        if all(cached.get(k) == v for k, v in key.items()):
            return cached
    reference = compute_reference(net, train, heldout)
    atomic_torch_save({**key, **reference}, path)
    return reference


def compute_reference(net: FeatureNet, train: Dataset, heldout: Dataset) -> dict:
    train_features, _ = net.features_and_probs(train.images)
    heldout_features, _ = net.features_and_probs(heldout.images[:REAL_SAMPLE])
    mu, sigma = feature_statistics(train_features.double().numpy())
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(SEED))[:REAL_SAMPLE]
    real_features = train_features[order]
    counts = torch.bincount(train.labels, minlength=train.num_classes).double()
    return {"mu": torch.from_numpy(mu), "sigma": torch.from_numpy(sigma),
            "label_distribution": counts / counts.sum(),
            "real_diversity": torch.tensor(collapse.mean_pairwise_distance(real_features.double().numpy(), seed=SEED)),
            "real_roughness": torch.tensor(collapse.roughness(train.images[order])),
            "real_features": real_features, "heldout_features": heldout_features}
