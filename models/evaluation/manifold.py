"""Fidelity, diversity, duplicates and memorisation in feature space, as pure functions.

The class histogram cannot see collapse within a class (every class drawn from a handful of
images) nor a generator that copies its training data; k-nearest-neighbour balls around
feature vectors can. Everything here maps N x D feature arrays, or the distances between them,
to statistics; the Evaluator caches the real side (radii, cut-offs) once per dataset.

- precision, recall (Kynkaanniemi et al. 2019): the share of generated samples inside the real
  manifold (the union of balls reaching each real sample's k-th nearest real neighbour), and of
  real samples inside the generated one.
- density, coverage (Naeem et al. 2020): real balls per generated sample over k (about 1 for
  identical distributions), and the share of real balls holding a generated sample (about
  1 - (1/2)^k for identical distributions of equal size; low when modes are missing).
- near-duplicates: generated samples whose nearest generated neighbour is closer than all but
  DUPLICATE_PERCENTILE % of the real data's nearest-neighbour distances.
- memorisation: generated samples closer to their nearest training sample than all but
  COPY_PERCENTILE % of held-out real images are (Meehan et al. 2020's data-copying test, read per
  sample like Alaa et al. 2022's authenticity).
"""

import numpy as np

K = 5  # neighbours for the manifold radii (Naeem et al.'s and Kynkaanniemi et al.'s choice)
DUPLICATE_PERCENTILE = 1.0  # of real nearest-neighbour distances: closer is a near-duplicate
COPY_PERCENTILE = 1.0  # of held-out-to-training distances: closer is a copy of a training image
CHUNK = 4096  # reference rows per block of the nearest-distance pass (bounds its memory)


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of a and b, in their dtype (float32 halves the cost)."""
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(squared, 0))


def within_set_distances(features: np.ndarray) -> np.ndarray:
    """Pairwise distances inside one set, inf on the diagonal: a sample is not its own neighbour."""
    distances = pairwise_distances(features, features)
    np.fill_diagonal(distances, np.inf)
    return distances


def kth_nearest(within: np.ndarray, k: int) -> np.ndarray:
    """Each sample's distance to its k-th nearest other sample, from `within_set_distances`."""
    return np.partition(within, k - 1, axis=1)[:, k - 1]


def nearest_distances(queries: np.ndarray, reference: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """Each query's distance to its nearest reference row, a block of rows at a time: the
    reference may be a whole training set, too large for one distance matrix."""
    nearest = np.full(len(queries), np.inf, dtype=np.result_type(queries, reference))
    for start in range(0, len(reference), chunk):
        nearest = np.minimum(nearest, pairwise_distances(queries, reference[start:start + chunk]).min(axis=1))
    return nearest


def precision_recall_density_coverage(real_to_fake: np.ndarray, real_radii: np.ndarray,
                                      fake_radii: np.ndarray, k: int = K) -> dict:
    """The four k-NN statistics from one real x generated distance matrix and each side's k-th
    neighbour radii, with Naeem et al.'s strict `<` (a sample on a ball's edge is outside)."""
    in_real_balls = real_to_fake < real_radii[:, None]
    return {"precision": float(in_real_balls.any(axis=0).mean()),
            "recall": float((real_to_fake < fake_radii[None, :]).any(axis=1).mean()),
            "density": float(in_real_balls.sum() / (k * real_to_fake.shape[1])),
            "manifold_coverage": float(in_real_balls.any(axis=1).mean())}


def share_closer_than(distances: np.ndarray, cutoff: float) -> float:
    """Share of samples whose distance is strictly below the cut-off: near-duplicates when the
    distances are to the nearest generated neighbour, copies when to the nearest training sample."""
    return float((np.asarray(distances) < cutoff).mean())

