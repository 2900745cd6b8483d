"""The mode-collapse / divergence / memorisation ground-truth bench on real held-out data.

Part one, the class histogram and pixel signals on Fashion-MNIST: every case is 2,000 images
with a known label: healthy (real, balanced or random), collapsed (real images from only k of 10
classes; one image repeated with slight noise; five images repeated; a DCGAN trained by this
project for 2 epochs, labelled by eye), or diverged (uniform noise, constant images, NaN).

Part two, the k-NN signals (models/evaluation/manifold.py), on Fashion-MNIST and MNIST at 500,
1,000 and 2,000 samples: healthy held-out draws; collapse within classes, where every class is
present but drawn from a few images (a few real images per class, exact or with pixel noise;
3 k-means prototypes per class); duplicates; memorised training images. And real models trained
here: a VAE and a GAN that are healthy, and a GAN that sees 64 images and collapses.

The thresholds in models/evaluation/collapse.py were calibrated on this bench; these tests pin
that no healthy case is flagged and every bad one is, and the margins the thresholds keep.
"""

import math
import os
from functools import cache
from pathlib import Path

import pytest
import torch

from models.config import GANConfig, VAEConfig
from models.data import from_gan_range, load_dataset
from models.evaluation import Evaluator, collapse, detect_collapse, history_signals
from models.evaluation.features import CACHE_DIR_ENV
from models.gan_trainer import GANTrainer
from models.vae_trainer import VAETrainer

N = 2000
HEALTHY, COLLAPSED, DIVERGED, MEMORIZED = "healthy", "collapsed", "diverged", "memorized"
GAN_EPOCHS = 2
GAN_TRAIN_IMAGES = 10_000


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV) or tmp_path_factory.getbasetemp() / "gantune-cache")


@pytest.fixture(scope="session")
def evaluator(data_dir, cache_dir):
    return Evaluator.for_dataset("fashion_mnist", data_dir, cache_dir=cache_dir, n_samples=N)


def balanced(data, classes, seed: int) -> torch.Tensor:
    """N real images drawn evenly from the given classes."""
    g = torch.Generator().manual_seed(seed)
    per_class = -(-N // len(classes))
    picks = [torch.nonzero(data.labels == c)[:, 0] for c in classes]
    idx = torch.cat([p[torch.randperm(len(p), generator=g)[:per_class]] for p in picks])
    return data.images[idx[torch.randperm(len(idx), generator=g)][:N]]


def with_noise(images: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (images + sigma * torch.randn(images.shape, generator=g)).clamp(0, 1)


@pytest.fixture(scope="session")
def bench(fashion_test) -> dict:
    """name -> (images, ground truth) for every case that needs no training."""
    g = torch.Generator().manual_seed(0)
    shape = (N,) + tuple(fashion_test.images.shape[1:])
    cases = {
        "real balanced": (balanced(fashion_test, range(10), seed=0), HEALTHY),
        "real balanced, other draw": (balanced(fashion_test, range(10), seed=1), HEALTHY),
        "real random": (fashion_test.images[torch.randperm(len(fashion_test), generator=g)[:N]], HEALTHY),
        "one image + slight noise": (with_noise(fashion_test.images[:1].expand(shape), 0.02, seed=2), COLLAPSED),
        "5 images repeated": (fashion_test.images[:5].repeat(N // 5, 1, 1, 1), COLLAPSED),
        "uniform noise": (torch.rand(shape, generator=g), DIVERGED),
        "constant grey": (torch.full(shape, 0.5), DIVERGED),
        "constant black": (torch.zeros(shape), DIVERGED),
        "NaN": (torch.full(shape, math.nan), DIVERGED),
    }
    for k in (1, 2, 3, 5):
        cases[f"{k} of 10 classes"] = (balanced(fashion_test, range(k), seed=10 + k), COLLAPSED)
    cases["5 other classes"] = (balanced(fashion_test, range(5, 10), seed=20), COLLAPSED)
    return cases


@pytest.fixture(scope="session")
def gan_samples(fashion_train) -> torch.Tensor:
    """A DCGAN (GANConfig defaults) after 2 epochs on 10k Fashion-MNIST images. Its sample grid
    shows varied but blocky, checkerboarded upper-body garments (tops, shirts, coats) and
    hardly any trousers, footwear or bags: a partial mode collapse, not a divergence."""
    trainer = GANTrainer(GANConfig(seed=0), fashion_train.subset(GAN_TRAIN_IMAGES, seed=0), "cpu")
    for _ in range(GAN_EPOCHS):
        trainer.train_epoch()
    torch.manual_seed(1)
    return from_gan_range(trainer.sample(N)).clamp(0, 1)


def check(result: dict, truth: str) -> None:
    if truth == HEALTHY:
        assert not result["collapsed"] and not result["diverged"], result
        assert result["collapse_score"] < 0.5
    else:
        assert result["collapsed"] and result["collapse_score"] >= 0.5, result
        assert result["diverged"] == (truth == DIVERGED), result
        assert result["reasons"]
    assert result["memorized"] == (truth == MEMORIZED), result


CASE_NAMES = ["real balanced", "real balanced, other draw", "real random", "one image + slight noise",
              "5 images repeated", "uniform noise", "constant grey", "constant black", "NaN",
              "1 of 10 classes", "2 of 10 classes", "3 of 10 classes", "5 of 10 classes", "5 other classes"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bench_case_gets_its_ground_truth_verdict(evaluator, bench, name):
    images, truth = bench[name]
    check(evaluator.evaluate(images), truth)


@pytest.mark.slow
def test_short_gan_run_is_flagged_as_partial_collapse(evaluator, gan_samples):
    result = evaluator.evaluate(gan_samples)
    check(result, COLLAPSED)
    assert beyond("recall", result["recall"], MARGIN), result  # measured: 0.015


@pytest.mark.slow
def test_collapsed_verdict_has_high_precision_and_recall_over_the_bench(evaluator, bench, gan_samples):
    cases = {**bench, "DCGAN, 2 epochs": (gan_samples, COLLAPSED)}
    flagged = {name: evaluator.evaluate(images)["collapsed"] for name, (images, _) in cases.items()}
    bad = {name for name, (_, truth) in cases.items() if truth != HEALTHY}
    true_positives = sum(flagged[name] for name in bad)
    precision = true_positives / max(sum(flagged.values()), 1)
    recall = true_positives / len(bad)
    print(f"collapsed over {len(cases)} bench cases: precision {precision:.3f}, recall {recall:.3f}")
    assert precision >= 0.95 and recall >= 0.95


def test_nan_images_are_a_result_not_an_exception(evaluator, bench):
    result = evaluator.evaluate(bench["NaN"][0])
    assert result["diverged"] and result["collapsed"]
    assert math.isinf(result["fid"]) and math.isfinite(result["fid_floor"])


# --- training-dynamics signals ----------------------------------------------------------------

def test_non_finite_loss_in_history_is_divergence_even_for_good_images(evaluator, bench):
    history = [{"d_loss": 1.2, "g_loss": 0.9}, {"d_loss": math.nan, "g_loss": math.inf}]
    result = evaluator.evaluate(bench["real balanced"][0], history=history)
    assert result["diverged"] and result["collapsed"]


def test_diverged_flag_in_history_is_divergence():
    diverged, collapsing, reasons = history_signals([{"d_loss": 1.0, "g_loss": 1.0, "diverged": True}])
    assert diverged and not collapsing and reasons


def test_discriminator_winning_outright_is_a_collapse_signal():
    history = [{"d_loss": 0.03, "g_loss": 4.0}, {"d_loss": 0.01, "g_loss": 6.0}, {"d_loss": 0.004, "g_loss": 8.5}]
    diverged, collapsing, _ = history_signals(history)
    assert collapsing and not diverged
    healthy_signals = dict(coverage_fraction=1.0, entropy=1.0, kl=0.0, diversity=1.0)
    assert detect_collapse(**healthy_signals, history=history)["collapsed"]
    assert not detect_collapse(**healthy_signals)["collapsed"]


@pytest.mark.parametrize("history", [
    [{"d_loss": 1.3, "g_loss": 0.8}, {"d_loss": 1.1, "g_loss": 1.0}, {"d_loss": 1.0, "g_loss": 1.6}],
    [{"d_loss": 0.03, "g_loss": 4.0}, {"d_loss": 0.02, "g_loss": 4.1}, {"d_loss": 0.02, "g_loss": 4.2}],
    [{"d_loss": 0.03, "g_loss": 4.0}, {"d_loss": 0.02, "g_loss": 9.0}],
])
def test_normal_or_short_histories_raise_no_signal(history):
    assert history_signals(history) == (False, False, [])


def test_a_signal_exactly_at_its_threshold_is_not_collapse():
    at_threshold = detect_collapse(coverage_fraction=0.8, entropy=0.95, kl=0.1, diversity=0.9)
    just_below = detect_collapse(coverage_fraction=0.7, entropy=0.95, kl=0.1, diversity=0.9)
    assert not at_threshold["collapsed"] and at_threshold["reasons"] == []
    assert just_below["collapsed"] and just_below["reasons"] == ["coverage 70% of classes < 80%"]


# --- part two: the k-NN signals, at several sample sizes, on two datasets -----------------------

SIZES = (500, 1000, 2000)
DATASETS = ("fashion_mnist", "mnist")  # offline MNIST: its real 10k test split, 8k train / 2k held out
FAINT, VISIBLE = 0.02, 0.05  # pixel noise std: barely visible, clearly visible


def random_draw(data, n: int, seed: int) -> torch.Tensor:
    return data.images[torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]]


def repeated(images: torch.Tensor, n: int) -> torch.Tensor:
    """n images cycling through the given ones."""
    return images[torch.arange(n) % len(images)]


def per_class(data, k: int, seed: int) -> torch.Tensor:
    """k distinct real images of every class."""
    g = torch.Generator().manual_seed(seed)
    picks = [torch.nonzero(data.labels == c)[:, 0] for c in range(data.num_classes)]
    return torch.cat([data.images[p[torch.randperm(len(p), generator=g)[:k]]] for p in picks])


def prototypes(data, k: int, seed: int, iterations: int = 20) -> torch.Tensor:
    """k k-means centroids (in pixel space) of every class: blurry class averages."""
    g = torch.Generator().manual_seed(seed)
    centroids = []
    for c in range(data.num_classes):
        x = data.images[data.labels == c].flatten(1)
        centres = x[torch.randperm(len(x), generator=g)[:k]]
        for _ in range(iterations):
            nearest = torch.cdist(x, centres).argmin(1)
            centres = torch.stack([x[nearest == j].mean(0) if (nearest == j).any() else centres[j]
                                   for j in range(k)])
        centroids.append(centres)
    return torch.cat(centroids).view(-1, *data.shape)


def with_copies(data, n: int, share: float, seed: int) -> torch.Tensor:
    """n real images, `share` of them exact copies of others among them."""
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    copies = int(share * n)
    idx[n - copies:] = idx[:copies]
    return data.images[idx]


def memorised(train, heldout, n: int, share: float, seed: int) -> torch.Tensor:
    """n images, `share` of them training images (a generator that copies its data), the rest held out."""
    copies = int(share * n)
    return torch.cat([random_draw(train, copies, seed), random_draw(heldout, n - copies, seed)])


# name -> (images from (held-out set, training set, n), ground truth, the k-NN signals that must catch it)
FEATURE_CASES = {
    "held-out draw": (lambda h, t, n: random_draw(h, n, seed=0), HEALTHY, ()),
    "held-out draw, other seed": (lambda h, t, n: random_draw(h, n, seed=1), HEALTHY, ()),
    "3 images per class": (lambda h, t, n: repeated(per_class(h, 3, seed=30), n), COLLAPSED,
                           ("recall", "duplicate_share")),
    "6 images per class + faint noise": (lambda h, t, n: with_noise(repeated(per_class(h, 6, seed=31), n), FAINT, 3),
                                         COLLAPSED, ("duplicate_share",)),
    "13 images per class + visible noise": (lambda h, t, n: with_noise(repeated(per_class(h, 13, seed=32), n),
                                                                       VISIBLE, 3), COLLAPSED, ("duplicate_share",)),
    "3 prototypes per class": (lambda h, t, n: repeated(prototypes(h, 3, seed=4), n), COLLAPSED,
                               ("recall", "duplicate_share")),
    "3 prototypes per class + visible noise": (
        lambda h, t, n: with_noise(repeated(prototypes(h, 3, seed=4), n), VISIBLE, 5), COLLAPSED,
        ("recall", "duplicate_share")),
    "an eighth copies of others": (lambda h, t, n: with_copies(h, n, 1 / 8, seed=6), COLLAPSED, ("duplicate_share",)),
    "half copies of others + faint noise": (lambda h, t, n: with_noise(with_copies(h, n, 1 / 2, seed=6), FAINT, 7),
                                            COLLAPSED, ("duplicate_share",)),
    "training images": (lambda h, t, n: memorised(t, h, n, 1.0, seed=8), MEMORIZED, ("memorized_share",)),
    "training images + faint noise": (lambda h, t, n: with_noise(memorised(t, h, n, 1.0, seed=8), FAINT, 9),
                                      MEMORIZED, ("memorized_share",)),
    "a quarter training images": (lambda h, t, n: memorised(t, h, n, 0.25, seed=8), MEMORIZED, ("memorized_share",)),
}
LOW_IS_BAD = {"recall": collapse.RECALL_MIN}
HIGH_IS_BAD = {"duplicate_share": collapse.DUPLICATE_SHARE_MAX, "memorized_share": collapse.MEMORIZED_SHARE_MAX}
MARGIN = 2.0  # every healthy value and every bad one sits at least this factor from its threshold


def beyond(signal: str, value: float, margin: float = 1.0) -> bool:
    """The value is on the bad side of the signal's threshold, by the factor `margin`."""
    if signal in LOW_IS_BAD:
        return value * margin < LOW_IS_BAD[signal]
    return value > HIGH_IS_BAD[signal] * margin


def within(signal: str, value: float, margin: float = 1.0) -> bool:
    """The value is on the healthy side of the signal's threshold, by the factor `margin`."""
    if signal in LOW_IS_BAD:
        return value >= LOW_IS_BAD[signal] * margin
    return value * margin <= HIGH_IS_BAD[signal]


@pytest.fixture(scope="session")
def feature_bench(data_dir, cache_dir, evaluator, fashion_train, fashion_test):
    """(dataset, n, case) -> the evaluation of that case, computed once."""
    mnist = [load_dataset("mnist", data_dir, train=train, download=False) for train in (True, False)]
    sets = {"fashion_mnist": (evaluator, fashion_train, fashion_test),
            "mnist": (Evaluator.for_dataset("mnist", data_dir, cache_dir=cache_dir, n_samples=N), *mnist)}

    @cache
    def evaluate(dataset: str, n: int, case: str) -> dict:
        bench_evaluator, train, heldout = sets[dataset]
        return bench_evaluator.evaluate(FEATURE_CASES[case][0](heldout, train, n))
    return evaluate


@pytest.mark.parametrize("case", FEATURE_CASES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dataset", DATASETS)
def test_feature_space_case_gets_its_ground_truth_verdict(feature_bench, dataset, n, case):
    _, truth, signals = FEATURE_CASES[case]
    result = feature_bench(dataset, n, case)
    check(result, truth)
    assert all(beyond(signal, result[signal]) for signal in signals), result


def test_feature_space_thresholds_keep_their_margins(feature_bench):
    results = {(dataset, n, case): feature_bench(dataset, n, case)
               for dataset in DATASETS for n in SIZES for case in FEATURE_CASES}
    for signal in (*LOW_IS_BAD, *HIGH_IS_BAD):
        healthy = {key: r[signal] for key, r in results.items() if FEATURE_CASES[key[2]][1] == HEALTHY}
        bad = {key: r[signal] for key, r in results.items() if signal in FEATURE_CASES[key[2]][2]}
        worst_healthy = (min if signal in LOW_IS_BAD else max)(healthy.values())
        mildest_bad = (max if signal in LOW_IS_BAD else min)(bad.values())
        print(f"{signal}: worst healthy {worst_healthy:.3f}, mildest bad {mildest_bad:.3f}")
        assert all(within(signal, v, MARGIN) for v in healthy.values()), healthy
        assert all(beyond(signal, v, MARGIN) for v in bad.values()), bad


# --- real models: two healthy ones, one that collapses --------------------------------------------

HEALTHY_GAN = GANConfig.from_dict({  # a small cousin of bench/results/quality.json's B winner
    "loss": "hinge", "z_dim": 64, "lr_g": 1.35e-3, "lr_d": 3.5e-4, "beta1": 0.1, "beta2": 0.9, "d_norm": "spectral",
    "ema_decay": 0.999, "width": 32, "batch_size": 32, "seed": 0})
HEALTHY_GAN_EPOCHS = 3  # on 10k images: about 25 s on an idle 2-core CPU
TINY_DATA, TINY_DATA_STEPS = 64, 500  # a generator that sees 64 images: about 15 s
ANALYSIS_VAE = VAEConfig(latent_dim=16, batch_size=32, epochs=5, lr=3e-3, beta=0.5, seed=0)  # tests/test_analysis.py's
ANALYSIS_SAMPLES = 5000  # as tests/test_analysis.py evaluates it


@pytest.fixture(scope="session")
def healthy_gan_samples(fashion_train) -> torch.Tensor:
    """Hinge loss, spectral norm, an EMA of G: all ten classes by epoch 3 (FID about 130)."""
    trainer = GANTrainer(HEALTHY_GAN, fashion_train.subset(GAN_TRAIN_IMAGES, seed=0), "cpu")
    for _ in range(HEALTHY_GAN_EPOCHS):
        trainer.train_epoch()
    return from_gan_range(trainer.sample(N)).clamp(0, 1)


@pytest.fixture(scope="session")
def analysis_vae_samples(fashion_train) -> torch.Tensor:
    """The healthy VAE of tests/test_analysis.py: blurry, so its recall is the lowest healthy one."""
    trainer = VAETrainer(ANALYSIS_VAE, fashion_train.subset(10_000, seed=0), "cpu")  # as there
    for _ in range(ANALYSIS_VAE.epochs):
        trainer.train_epoch()
    return trainer.sample(ANALYSIS_SAMPLES)


@pytest.fixture(scope="session")
def tiny_data_gan_samples(fashion_train) -> torch.Tensor:
    """A DCGAN whose whole training set is 64 images: its samples crowd around a few of them."""
    trainer = GANTrainer(GANConfig(width=32, seed=0), fashion_train.subset(TINY_DATA, seed=0), "cpu")
    trainer.train_steps(TINY_DATA_STEPS)
    return from_gan_range(trainer.sample(N)).clamp(0, 1)


@pytest.mark.slow
def test_real_healthy_models_stay_healthy_with_margins(evaluator, healthy_gan_samples, analysis_vae_samples):
    for samples in (healthy_gan_samples, analysis_vae_samples):
        result = evaluator.evaluate(samples)
        print({k: round(v, 3) for k, v in result.items() if isinstance(v, float)})
        check(result, HEALTHY)
        assert all(within(signal, result[signal], MARGIN) for signal in (*LOW_IS_BAD, *HIGH_IS_BAD)), result


@pytest.mark.slow
def test_a_gan_that_sees_64_images_collapses(evaluator, tiny_data_gan_samples):
    result = evaluator.evaluate(tiny_data_gan_samples)
    print({k: round(v, 3) for k, v in result.items() if isinstance(v, float)})
    check(result, COLLAPSED)
    assert beyond("recall", result["recall"], MARGIN), result  # measured: 0.000
