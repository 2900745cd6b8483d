"""Mode-collapse and divergence signals as pure functions, and the detector that combines them.

Signals from the generated sample (classifier histogram, feature spread, the k-NN statistics of
manifold.py) and, optionally, from the recent training history (losses). `detect_collapse`
turns them into one verdict. "Collapsed" means "this trial should lose": it is True for mode
collapse, for divergence and for memorisation; `diverged` and `memorized` tell them apart.
"""

import math

import numpy as np

from models.evaluation.manifold import pairwise_distances

PAIRWISE_SAMPLES = 500  # generated (and real) features used for the mean pairwise distance
BLANK_STD = 0.02  # an image whose pixel std is below this is blank (real Fashion-MNIST minimum: 0.065)

# Thresholds, calibrated on the ground-truth bench in tests/test_collapse.py (Fashion-MNIST,
# 2,000 samples per case; healthy = real held-out draws). Each sits between the worst healthy
# value and the mildest bad value the bench measured (the 2-epoch DCGAN, which covers only
# upper-body garments, is a partial-collapse case: coverage 0.5, entropy 0.77, KL 0.54):
COVERAGE_MIN_FRACTION = 0.8  # healthy: 1.0 (10/10 classes); collapsed: <= 0.6 (k=5 classes: 6/10 and 5/10)
ENTROPY_MIN = 0.89  # healthy: >= 0.999; collapsed: <= 0.78 (k=5 classes)
KL_MAX = 0.25  # healthy: <= 0.002; collapsed: >= 0.50 (k=5 classes)
DIVERSITY_MIN = 0.5  # healthy: >= 0.996; one image + noise: 0.03 (k=1 class: 0.60)
ROUGHNESS_MAX = 3.0  # pixel roughness / real: healthy <= 1.01, DCGAN (not diverged) 1.16; uniform noise 4.28
BLANK_FRACTION_MAX = 0.5  # healthy: 0.0; constant images: 1.0

# k-NN signals (manifold.py), calibrated on the same bench's part two: Fashion-MNIST and MNIST at
# 500, 1,000 and 2,000 samples, held-out draws and real models trained there (a 3-epoch GAN; the
# VAE of tests/test_analysis.py at its 5,000 samples) as healthy; collapse within classes (30-130
# distinct images, exact or with pixel noise up to std 0.05; 3 k-means prototypes per class),
# copies and training images as bad. Manifold coverage, precision and density are reported, not
# judged: blurry samples fall outside the real balls, so the healthy VAE (coverage 0.13-0.31) and
# GAN (0.25-0.52) score as low as collapse within classes (0.01-0.74); recall and duplicates do not.
RECALL_MIN = 0.05  # healthy: >= 0.878 held-out, 0.33 GAN, 0.18-0.20 VAE; bad: 0.000 (>= 5 copies of each image;
# 130 images in 500 samples keep 0.49-0.64, and duplicates catch them), real GANs 0.001 (64 images) and 0.015
DUPLICATE_SHARE_MAX = 0.1  # healthy: <= 0.020 held-out, <= 0.009 models; bad: >= 0.99 within classes,
# 0.248 (an eighth of the samples copies of others)
MEMORIZED_SHARE_MAX = 0.1  # healthy: <= 0.016 held-out, <= 0.001 models; bad: >= 0.89 copies (exact or std 0.02
# noise), 0.257 (a quarter copies). Std 0.05 noise hides copies from it (0.013 Fashion-MNIST, 0.36 MNIST).

# Training dynamics: D loss pinned near zero while the G loss keeps climbing.
D_LOSS_PINNED = 0.05
G_LOSS_CLIMB_RATIO = 1.5
HISTORY_WINDOW = 3


def class_histogram(probs: np.ndarray, num_classes: int) -> np.ndarray:
    """Share of samples assigned to each class by the classifier's arg-max."""
    counts = np.bincount(np.asarray(probs).argmax(axis=1), minlength=num_classes)
    return counts / max(counts.sum(), 1)


def coverage(histogram: np.ndarray, label_distribution: np.ndarray) -> int:
    """Classes that receive at least half of the share they have in the real data."""
    return int((histogram >= 0.5 * label_distribution).sum())


def normalized_entropy(histogram: np.ndarray) -> float:
    """Entropy of the class histogram divided by log(num_classes): 1 balanced, 0 one class."""
    p = histogram[histogram > 0]
    return float(-(p * np.log(p)).sum() / math.log(len(histogram)))


def kl_to_labels(histogram: np.ndarray, label_distribution: np.ndarray) -> float:
    """KL(generated class histogram || real label distribution), in nats."""
    mask = histogram > 0
    return float((histogram[mask] * np.log(histogram[mask] / label_distribution[mask])).sum())


def mean_pairwise_distance(features: np.ndarray, max_samples: int = PAIRWISE_SAMPLES, seed: int = 0) -> float:
    """Mean Euclidean distance between distinct pairs of a (sub)sample of feature vectors."""
    features = np.asarray(features, dtype=np.float64)
    if len(features) > max_samples:
        features = features[np.random.default_rng(seed).choice(len(features), max_samples, replace=False)]
    distances = pairwise_distances(features, features)
    n = len(features)
    return float(distances.sum() / (n * (n - 1)))


def roughness(images) -> float:
    """Mean absolute difference between neighbouring pixels: high for noise, low for blanks."""
    horizontal = (images[..., :, 1:] - images[..., :, :-1]).abs().mean()
    vertical = (images[..., 1:, :] - images[..., :-1, :]).abs().mean()
    return float((horizontal + vertical) / 2)


def blank_fraction(images, std: float = BLANK_STD) -> float:
    """Share of images that are (nearly) constant."""
    return float((images.flatten(1).std(dim=1) < std).float().mean())


def history_signals(history) -> tuple[bool, bool, list[str]]:
    """(diverged, collapsing, reasons) from recent training metrics, oldest first.

    Entries are GAN (`d_loss`, `g_loss`) or VAE (`loss`) metrics. Divergence: any non-finite
    loss or a `diverged` flag. Collapse: over the last
    HISTORY_WINDOW entries the D loss stays below D_LOSS_PINNED while the G loss climbs by
    G_LOSS_CLIMB_RATIO, i.e. the discriminator wins outright and the generator cannot recover.
    """
    history = list(history or [])
    reasons = []
    non_finite = [i for i, h in enumerate(history)
                  if h.get("diverged") or not all(math.isfinite(v) for k, v in h.items() if k != "diverged")]
    if non_finite:
        reasons.append(f"training diverged: non-finite loss or diverged flag at history entry {non_finite[0]}")
    window = history[-HISTORY_WINDOW:]
    collapsing = (not non_finite and len(window) == HISTORY_WINDOW and all("d_loss" in h for h in window)
                  and all(0 <= h["d_loss"] < D_LOSS_PINNED for h in window)
                  and all(b["g_loss"] >= a["g_loss"] for a, b in zip(window, window[1:]))
                  and window[-1]["g_loss"] >= G_LOSS_CLIMB_RATIO * window[0]["g_loss"] > 0)
    if collapsing:
        reasons.append(f"D loss pinned below {D_LOSS_PINNED} while G loss climbed "
                       f"{window[0]['g_loss']:.3g} -> {window[-1]['g_loss']:.3g}")
    return bool(non_finite), collapsing, reasons


def _severity_low(value: float, threshold: float) -> float:
    """0 at the healthy value 1, 0.5 at the threshold, 1 at twice the threshold's deficit."""
    return float(np.clip(0.5 * (1 - value) / (1 - threshold), 0, 1))


def _severity_high(value: float, threshold: float) -> float:
    """0 at the healthy value 0, 0.5 at the threshold, 1 at twice the threshold."""
    return float(np.clip(0.5 * value / threshold, 0, 1))


def detect_collapse(coverage_fraction: float | None, entropy: float | None, kl: float | None, diversity: float,
                    roughness_ratio: float = 1.0, blank_share: float = 0.0,
                    non_finite_images: bool = False, history=None, recall: float = 1.0,
                    duplicate_share: float = 0.0, memorized_share: float = 0.0) -> dict:
    """Combine the signals into {collapse_score, collapsed, diverged, memorized, reasons}.

    Each sample signal maps to a severity in [0, 1] that is 0.5 at its threshold; collapsed is
    True when a signal is strictly beyond its threshold (or the losses say so). collapse_score
    is the largest severity: at least 0.5 when collapsed, at most 0.5 otherwise (1 when diverged).
    Divergence (non-finite images, pixel noise - roughness far above the real data's -, blank
    images, non-finite losses) and memorisation (too many samples copy training images) also set
    collapsed, since such a trial must lose as well; `diverged` and `memorized` tell them apart
    from mode collapse. Without classes (an unlabelled folder) the three class signals are None
    and the verdict rests on the others.
    """
    reasons = []
    history_diverged, history_collapsing, history_reasons = history_signals(history)
    reasons += history_reasons
    if non_finite_images:
        reasons.append("generated images contain NaN or inf")
    noisy = roughness_ratio > ROUGHNESS_MAX
    if noisy:
        reasons.append(f"pixel roughness {roughness_ratio:.2f}x the real data's (> {ROUGHNESS_MAX}): noise")
    blank = blank_share > BLANK_FRACTION_MAX
    if blank:
        reasons.append(f"{blank_share:.0%} of images are blank (> {BLANK_FRACTION_MAX:.0%})")
    diverged = non_finite_images or noisy or blank or history_diverged
    if diverged:
        return {"collapse_score": 1.0, "collapsed": True, "diverged": True, "memorized": False, "reasons": reasons}
    memorized = memorized_share > MEMORIZED_SHARE_MAX
    signals = [] if coverage_fraction is None else [  # (reason, severity, beyond its threshold)
        (f"coverage {coverage_fraction:.0%} of classes < {COVERAGE_MIN_FRACTION:.0%}",
         _severity_low(coverage_fraction, COVERAGE_MIN_FRACTION), coverage_fraction < COVERAGE_MIN_FRACTION),
        (f"class entropy {entropy:.2f} < {ENTROPY_MIN}", _severity_low(entropy, ENTROPY_MIN), entropy < ENTROPY_MIN),
        (f"KL to label distribution {kl:.2f} > {KL_MAX}", _severity_high(kl, KL_MAX), kl > KL_MAX),
    ]
    signals += [
        (f"diversity {diversity:.2f} of real < {DIVERSITY_MIN}", _severity_low(min(diversity, 1.0), DIVERSITY_MIN),
         diversity < DIVERSITY_MIN),
        (f"recall {recall:.2f} < {RECALL_MIN}: few real images have a generated one near them",
         _severity_low(recall, RECALL_MIN), recall < RECALL_MIN),
        (f"{duplicate_share:.0%} of samples are near-duplicates of another (> {DUPLICATE_SHARE_MAX:.0%})",
         _severity_high(duplicate_share, DUPLICATE_SHARE_MAX), duplicate_share > DUPLICATE_SHARE_MAX),
        (f"{memorized_share:.0%} of samples copy training images (> {MEMORIZED_SHARE_MAX:.0%})",
         _severity_high(memorized_share, MEMORIZED_SHARE_MAX), memorized),
    ]
    reasons += [reason for reason, _, beyond in signals if beyond]
    collapsed = history_collapsing or any(beyond for _, _, beyond in signals)
    score = max(severity for _, severity, _ in signals)
    score = max(score, 0.5) if collapsed else score
    return {"collapse_score": score, "collapsed": collapsed, "diverged": False, "memorized": memorized,
            "reasons": reasons}
