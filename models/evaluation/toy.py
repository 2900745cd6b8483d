"""Evaluation of the 2-D toy sets: the classic mode-collapse measures as pure functions of sample
arrays, and `ToyEvaluator`, which returns the keys the image Evaluator returns (fid, fid_floor and
the collapse verdict), so a toy search trains, ranks and stops collapsed trials through the same
trainable, objective and analysis.

The measures (Metz et al. 2017, "Unrolled GANs"; Srivastava et al. 2017, "VEEGAN"), with each
toy set's regions (Gaussian modes, or the arcs of a curve) and noise scale σ from models.toy_data:
- `coverage`: regions covered; a region counts when at least MIN_SHARE_OF_EXPECTED of its real
  share of the samples lies within 3σ of it (the ring: modes covered, of 8; the semicircles: halves);
- `high_quality_share`: samples within 3σ of the nearest region (of a mode centre for the ring,
  of the curve for the semicircles and moons);
- `balance`: the least-served region's share of the samples over its real share (1: every mode
  or half gets its share; 0: one gets none);
- `sliced_wasserstein`: the distance to fresh real samples, in the data's units;
- `fid`: the Fréchet distance between 2-D Gaussians fitted to the real and the generated points
  (FID's formula with the coordinates as the features; no network is involved). It sees only means
  and covariances, so it cannot tell the ring from a blob with the same spread: the collapse verdict
  (coverage, entropy and KL over the regions, spread) is what makes such a generator lose.
Each distance has a floor: its value between two disjoint real samples of the same size.
"""

import math

import numpy as np
import torch

from models.data import load_dataset
from models.errors import UserInputError, require_choice
from models.evaluation.collapse import detect_collapse, kl_to_labels, mean_pairwise_distance, normalized_entropy
from models.evaluation.fid import feature_statistics, frechet_distance
from models.toy_data import TOY_SETS, ToySet

TOLERANCE_STDS = 3.0  # a sample is "high quality" within 3σ of a mode or of the curve
MIN_SHARE_OF_EXPECTED = 0.25  # a region is covered with a quarter of its real share within 3σ of it
REAL_SAMPLE = 10_000  # fresh real points held for the distances (and as many again for their floors)
SLICES = 64  # projection directions of the sliced Wasserstein distance, evenly spread over half a turn
SEED = 0


def distances_to_centers(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """n x K: each point's Euclidean distance to each centre."""
    return np.linalg.norm(points[:, None, :] - centers[None, :, :], axis=2)


def distances_to_arcs(points: np.ndarray, arcs) -> np.ndarray:
    """n x K: each point's Euclidean distance to each circular arc (models.toy_data.Arc): to the
    circle where the point's angle lies within the arc, else to the nearer end."""
    columns = []
    for arc in arcs:
        offset = points - np.asarray(arc.center)
        angle = np.arctan2(offset[:, 1], offset[:, 0])
        within = (angle - arc.start) % (2 * math.pi) <= arc.end - arc.start
        to_circle = np.abs(np.hypot(offset[:, 0], offset[:, 1]) - arc.radius)
        ends = [arc.radius * np.array([math.cos(a), math.sin(a)]) for a in (arc.start, arc.end)]
        to_ends = np.minimum(*(np.linalg.norm(offset - end, axis=1) for end in ends))
        columns.append(np.where(within, to_circle, to_ends))
    return np.stack(columns, axis=1)


def region_distances(points: np.ndarray, toy: ToySet) -> np.ndarray:
    """n x K distances of the points to the toy set's modes or arcs."""
    if toy.centers:
        return distances_to_centers(points, np.asarray(toy.centers))
    return distances_to_arcs(points, toy.arcs)


def region_shares(distances: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """(share of the samples nearest each region, share nearest each region and within `tolerance` of it)."""
    nearest, closest = distances.argmin(axis=1), distances.min(axis=1)
    regions, n = distances.shape[1], len(distances)
    return (np.bincount(nearest, minlength=regions) / n,
            np.bincount(nearest[closest <= tolerance], minlength=regions) / n)


def regions_covered(close_shares: np.ndarray, expected: np.ndarray, min_share_of_expected: float) -> int:
    """Regions holding at least `min_share_of_expected` of their real share within the tolerance."""
    return int((close_shares >= min_share_of_expected * expected).sum())


def high_quality_share(distances: np.ndarray, tolerance: float) -> float:
    """Share of samples within `tolerance` of some region."""
    return float((distances.min(axis=1) <= tolerance).mean())


def balance(shares: np.ndarray, expected: np.ndarray) -> float:
    """The least-served region's share over its real share, at most 1."""
    return float(min(1.0, (shares / expected).min()))


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, slices: int = SLICES) -> float:
    """Sliced Wasserstein-1 distance between two equally sized 2-D samples: the mean over `slices`
    directions of the 1-D Wasserstein-1 distance between the projections (sorted, paired)."""
    if a.shape != b.shape:
        raise UserInputError(f"sliced_wasserstein: needs equally sized samples, got {a.shape} and {b.shape}")
    angles = np.arange(slices) * math.pi / slices
    directions = np.stack([np.cos(angles), np.sin(angles)])
    return float(np.abs(np.sort(a @ directions, axis=0) - np.sort(b @ directions, axis=0)).mean())


def gaussian_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted to two point sets (means, covariances)."""
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


class ToyEvaluator:
    """The image Evaluator's interface (`evaluate`, `fid_floor`, `to`) for a 2-D toy set: the
    measures above against fresh real points (the held-out split, never the training points)."""

    def __init__(self, name: str, real: np.ndarray, other_real: np.ndarray):
        self.toy = TOY_SETS[name]
        self.real, self.other_real = real, other_real
        self.tolerance = TOLERANCE_STDS * self.toy.std
        self.expected = region_shares(region_distances(real, self.toy), self.tolerance)[0]
        self.real_diversity = mean_pairwise_distance(real, seed=SEED)
        self._floors: dict[int, tuple[float, float]] = {}

    @classmethod
    def for_dataset(cls, name: str, n_samples: int = 2000) -> "ToyEvaluator":
        """Fresh real points of a toy set (its held-out draw); the floors for n_samples computed."""
        require_choice("dataset", name, TOY_SETS)
        points = load_dataset(name, train=False, toy_size=2 * REAL_SAMPLE).images.double().numpy()
        evaluator = cls(name, points[:REAL_SAMPLE], points[REAL_SAMPLE:])
        evaluator.floors(n_samples)
        return evaluator

    def to(self, device) -> "ToyEvaluator":
        """Nothing to move: the measures run in numpy."""
        return self

    def floors(self, n: int) -> tuple[float, float]:
        """(Gaussian Fréchet, sliced Wasserstein) between two disjoint real samples of n points (at
        most REAL_SAMPLE): what a perfect generator scores at this sample size."""
        n = min(n, REAL_SAMPLE)
        if n not in self._floors:
            real, other = self.real[:n], self.other_real[:n]
            self._floors[n] = (gaussian_frechet(other, real), sliced_wasserstein(other, real))
        return self._floors[n]

    def fid_floor(self, n: int) -> float:
        return self.floors(n)[0]

    def evaluate(self, points, history=None) -> dict:
        """Metrics for generated points (N x 2, the data's coordinates). Non-finite points are a
        result: the distances are inf and the verdict is diverged (and collapsed)."""
        points = self._check_points(points)
        n = min(len(points), REAL_SAMPLE)
        fid_floor, sw_floor = self.floors(n)
        floors = {"fid_floor": fid_floor, "sliced_wasserstein_floor": sw_floor}
        if not np.isfinite(points).all():
            verdict = detect_collapse(0.0, 0.0, math.inf, 0.0, non_finite_images=True, history=history)
            return {"fid": math.inf, "sliced_wasserstein": math.inf, "coverage": 0.0, "high_quality_share": 0.0,
                    "balance": 0.0, "entropy": 0.0, "kl_to_labels": math.inf, "diversity": 0.0, **floors, **verdict}
        distances = region_distances(points, self.toy)
        shares, close_shares = region_shares(distances, self.tolerance)
        covered = regions_covered(close_shares, self.expected, MIN_SHARE_OF_EXPECTED)
        entropy, kl = normalized_entropy(shares), kl_to_labels(shares, self.expected)
        diversity = mean_pairwise_distance(points, seed=SEED) / self.real_diversity
        verdict = detect_collapse(covered / self.toy.num_regions, entropy, kl, diversity, history=history)
        return {"fid": gaussian_frechet(points[:n], self.real[:n]),
                "sliced_wasserstein": sliced_wasserstein(points[:n], self.real[:n]),
                "coverage": float(covered), "high_quality_share": high_quality_share(distances, self.tolerance),
                "balance": balance(shares, self.expected), "entropy": entropy, "kl_to_labels": kl,
                "diversity": diversity, **floors, **verdict}

    @staticmethod
    def _check_points(points) -> np.ndarray:
        if isinstance(points, torch.Tensor):
            points = points.detach().cpu().double().numpy()
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2 or len(points) < 2:
            raise UserInputError(f"points: expected N x 2 generated points with N >= 2, got shape {points.shape}")
        return points
