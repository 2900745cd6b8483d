"""FID and KID as pure functions of feature arrays (no networks, no caching).

Conventions follow torch-fidelity / pytorch-fid: features are an N x D float array, the
statistics are the mean and the unbiased covariance, and all maths runs in float64 numpy.
"""

import warnings

import numpy as np
from scipy import linalg

from models.errors import UserInputError

SQRTM_EPS = 1e-6  # diagonal offset used by pytorch-fid when sigma1 @ sigma2 is singular


def require_enough_samples(num: int, dim: int, what: str = "features") -> None:
    """A covariance from fewer samples than dimensions is rank-deficient and FID meaningless."""
    if num < dim:
        raise UserInputError(f"{what}: {num} samples is fewer than the feature dimension {dim}; "
                             f"FID needs at least {dim} samples (2,000 or more for stable values)")


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean vector and (unbiased) covariance matrix of an N x D feature array."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise UserInputError(f"features: expected an N x D array, got shape {features.shape}")
    require_enough_samples(*features.shape)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2), the Frechet distance of two Gaussians."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise UserInputError(f"frechet_distance: mismatched statistics, means {mu1.shape} vs {mu2.shape}, "
                             f"covariances {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        # a singular product (e.g. dead ReLU features) is expected; only a non-finite root needs the offset
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * SQRTM_EPS
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real  # round-off leaves a tiny imaginary part on a PSD product
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(x . y / d + 1)^3, the KID kernel of Binkowski et al. (2018)."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between two equally sized samples under the polynomial kernel."""
    m = len(x)
    k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / (m * m))


def kid(features_a, features_b, num_subsets: int = 50, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: mean and std of unbiased MMD^2 over random equal-size subsets."""
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise UserInputError(f"kid: expected two N x D feature arrays with the same D, got {a.shape} and {b.shape}")
    subset_size = min(subset_size, len(a), len(b))
    if subset_size < 2:
        raise UserInputError(f"kid: needs at least 2 samples on each side, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    values = [mmd2_unbiased(a[rng.choice(len(a), subset_size, replace=False)],
                            b[rng.choice(len(b), subset_size, replace=False)])
              for _ in range(num_subsets)]
    return float(np.mean(values)), float(np.std(values))
