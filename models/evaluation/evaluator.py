"""The Evaluator: cached feature net + cached real-data statistics -> one metrics dict.

All caching lives here and in the feature-net loader; the maths is in fid.py, collapse.py and
manifold.py. An Evaluator is built once per dataset, pickled into Ray's object store, and shared
by trials.
"""

import hashlib
import math

import numpy as np
import torch

from models.data import Dataset, load_dataset
from models.errors import UserInputError
from models.evaluation import collapse, manifold
from models.evaluation.features import (FeatureNet, atomic_torch_save, data_checksum,
                                        load_or_train_feature_net, resolve_cache_dir)
from models.evaluation.fid import feature_statistics, frechet_distance, kid, require_enough_samples

REAL_SAMPLE = 10_000  # training features kept for KID, the FID floor, the diversity baseline and the manifold
MANIFOLD_SAMPLES = 5000  # generated (and real) samples for the k-NN statistics: n x n distances stay <= 100 MB
KID_SUBSETS = 20
KID_SUBSET_SIZE = 1000
RANGE_TOLERANCE = 1e-5  # float round-off allowed outside [0, 1]
SEED = 0
FEATURE_SPACE_KEYS = ("precision", "recall", "density", "manifold_coverage", "duplicate_share", "memorized_share")
REFERENCE_FORMAT = 3  # bump when the cached reference gains or changes fields


def net_checksum(net: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class Evaluator:
    """FID/KID against the real training data, the k-NN fidelity, diversity and memorisation
    statistics, and the mode-collapse detector."""

    def __init__(self, net: FeatureNet, image_shape: tuple, reference: dict):
        self.net = net.eval()
        self.image_shape = tuple(image_shape)
        self.mu = reference["mu"].numpy()
        self.sigma = reference["sigma"].numpy()
        self.label_distribution = reference["label_distribution"].numpy()
        self.labelled = len(self.label_distribution) >= 2  # else no class signals: the net learnt rotations
        self.real_diversity = float(reference["real_diversity"])
        self.real_roughness = float(reference["real_roughness"])
        self.train_features = reference["train_features"].numpy()  # all of them, in a seeded random order
        self.heldout_features = reference["heldout_features"].numpy()
        self.copy_cutoff = float(np.percentile(reference["heldout_train_distances"].numpy(), manifold.COPY_PERCENTILE))
        self._floors: dict[int, float] = {}
        self._manifolds: dict[int, tuple[np.ndarray, float]] = {}

    @classmethod
    def for_dataset(cls, name: str, data_dir=None, cache_dir=None, device="cpu",
                    n_samples: int = 2000, **data_options) -> "Evaluator":
        """Load (or train and cache) the feature net and reference statistics for a dataset;
        precompute the FID floor and the real k-NN radii for `n_samples` generated images.
        `data_options` (image_size, idx_images, idx_labels) go to load_dataset."""
        train = load_dataset(name, data_dir, train=True, **data_options)
        heldout = load_dataset(name, data_dir, train=False, **data_options)
        if not train.is_image:
            raise UserInputError(f"dataset: {name!r} is not an image set; the evaluator scores images")
        net, meta = load_or_train_feature_net(train, heldout, cache_dir, device)
        reference = load_or_compute_reference(net, train, heldout, meta["checksum"], cache_dir)
        evaluator = cls(net, train.shape, reference)
        evaluator.fid_floor(n_samples)
        evaluator.real_manifold(n_samples)
        return evaluator

    @property
    def real_features(self) -> np.ndarray:
        """The real sample: the first REAL_SAMPLE training features (a view, so pickles carry it once)."""
        return self.train_features[:REAL_SAMPLE]

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

    def manifold_size(self, n: int) -> int:
        """How many of n generated samples the k-NN statistics use, against as many real ones
        (equal sizes, as Naeem et al. assume: coverage then means the same at every n)."""
        return min(n, MANIFOLD_SAMPLES, len(self.real_features))

    def real_manifold(self, n: int) -> tuple[np.ndarray, float]:
        """The k-th nearest-neighbour radii of the first `manifold_size(n)` real features and
        their near-duplicate cut-off, computed once per sample size."""
        n = self.manifold_size(n)
        if n not in self._manifolds:
            within = manifold.within_set_distances(self.real_features[:n])
            cutoff = float(np.percentile(within.min(axis=1), manifold.DUPLICATE_PERCENTILE))
            self._manifolds[n] = (manifold.kth_nearest(within, manifold.K), cutoff)
        return self._manifolds[n]

    def feature_space_signals(self, features: np.ndarray) -> dict:
        """Precision, recall, density, manifold coverage and the near-duplicate and memorised
        shares of generated features (float32), against the cached real side."""
        n = self.manifold_size(len(features))
        real_radii, duplicate_cutoff = self.real_manifold(n)
        fake = features[:n]
        within = manifold.within_set_distances(fake)
        real_to_fake = manifold.pairwise_distances(self.real_features[:n], fake)
        signals = manifold.precision_recall_density_coverage(real_to_fake, real_radii,
                                                             manifold.kth_nearest(within, manifold.K))
        signals["duplicate_share"] = manifold.share_closer_than(within.min(axis=1), duplicate_cutoff)
        signals["memorized_share"] = manifold.share_closer_than(
            manifold.nearest_distances(features, self.train_features), self.copy_cutoff)
        return signals

    def evaluate(self, images: torch.Tensor, history=None) -> dict:
        """Metrics for generated images in [0, 1] (N x C x H x W, like the dataset).

        Non-finite images are a result, not an error: fid/kid/kl are inf, coverage, entropy,
        diversity and the k-NN statistics 0, and the verdict is diverged (and collapsed).
        """
        images = self._check_images(images)
        floor = self.fid_floor(len(images))
        if not torch.isfinite(images).all():
            verdict = collapse.detect_collapse(0.0, 0.0, math.inf, 0.0, non_finite_images=True, history=history)
            classes = {"coverage": 0.0, "entropy": 0.0, "kl_to_labels": math.inf} if self.labelled else {}
            return {"fid": math.inf, "fid_floor": floor, "kid": math.inf, **classes, "diversity": 0.0,
                    **dict.fromkeys(FEATURE_SPACE_KEYS, 0.0), **verdict}
        features, probs = self.net.features_and_probs(images)
        signals = self.feature_space_signals(features.numpy())
        features = features.double().numpy()
        classes = self.class_signals(probs.double().numpy()) if self.labelled else {}
        diversity = collapse.mean_pairwise_distance(features, seed=SEED) / self.real_diversity
        coverage_fraction = classes["coverage"] / len(self.label_distribution) if classes else None
        verdict = collapse.detect_collapse(
            coverage_fraction, classes.get("entropy"), classes.get("kl_to_labels"), diversity,
            collapse.roughness(images) / self.real_roughness, collapse.blank_fraction(images),
            recall=signals["recall"], duplicate_share=signals["duplicate_share"],
            memorized_share=signals["memorized_share"], history=history)
        kid_mean, _ = kid(features, self.real_features, KID_SUBSETS, KID_SUBSET_SIZE, SEED)
        return {"fid": frechet_distance(*feature_statistics(features), self.mu, self.sigma),
                "fid_floor": floor, "kid": kid_mean, **classes, "diversity": diversity, **signals, **verdict}

    def class_signals(self, probs: np.ndarray) -> dict:
        """Classes covered, the histogram's normalised entropy and its KL to the real labels."""
        histogram = collapse.class_histogram(probs, len(self.label_distribution))
        return {"coverage": float(collapse.coverage(histogram, self.label_distribution)),
                "entropy": collapse.normalized_entropy(histogram),
                "kl_to_labels": collapse.kl_to_labels(histogram, self.label_distribution)}

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
        if isinstance(cached, dict) and all(cached.get(k) == v for k, v in key.items()):  # not another shape
            return cached
    reference = compute_reference(net, train, heldout)
    atomic_torch_save({**key, **reference}, path)
    return reference


def compute_reference(net: FeatureNet, train: Dataset, heldout: Dataset) -> dict:
    """Every training image's features (in a seeded random order: the first REAL_SAMPLE are the
    real sample), held-out features and each held-out image's distance to its nearest training image."""
    train_features, _ = net.features_and_probs(train.images)
    heldout_features, _ = net.features_and_probs(heldout.images[:REAL_SAMPLE])
    mu, sigma = feature_statistics(train_features.double().numpy())
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(SEED))
    train_features = train_features[order]
    real_features = train_features[:REAL_SAMPLE]
    heldout_train_distances = manifold.nearest_distances(heldout_features.numpy(), train_features.numpy())
    counts = torch.bincount(train.labels, minlength=train.num_classes).double()
    return {"mu": torch.from_numpy(mu), "sigma": torch.from_numpy(sigma),
            "label_distribution": counts / counts.sum(),
            "real_diversity": torch.tensor(collapse.mean_pairwise_distance(real_features.double().numpy(), seed=SEED)),
            "real_roughness": torch.tensor(collapse.roughness(train.images[order[:REAL_SAMPLE]])),
            "train_features": train_features, "heldout_features": heldout_features,
            "heldout_train_distances": torch.from_numpy(heldout_train_distances)}
