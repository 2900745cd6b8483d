"""The mode-collapse / divergence ground-truth bench on real held-out Fashion-MNIST.

Every case is 2,000 images with a known label: healthy (real, balanced or random), collapsed
(real images from only k of 10 classes; one image repeated with slight noise; five images
repeated; a DCGAN trained by this project for 2 epochs, labelled by eye), or diverged
(uniform noise, constant images, NaN). The thresholds in models/evaluation/collapse.py were
calibrated on this bench; these tests pin that no healthy case is flagged and every bad one is.
"""

import math
import os
from pathlib import Path

import pytest
import torch

from models.config import GANConfig
from models.data import from_gan_range
from models.evaluation import Evaluator, detect_collapse, history_signals
from models.evaluation.features import CACHE_DIR_ENV
from models.gan_trainer import GANTrainer

N = 2000
HEALTHY, COLLAPSED, DIVERGED = "healthy", "collapsed", "diverged"
GAN_EPOCHS = 2
GAN_TRAIN_IMAGES = 10_000


@pytest.fixture(scope="session")
def evaluator(data_dir, tmp_path_factory):
    cache_dir = Path(os.environ.get(CACHE_DIR_ENV) or tmp_path_factory.getbasetemp() / "gantune-cache")
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


CASE_NAMES = ["real balanced", "real balanced, other draw", "real random", "one image + slight noise",
              "5 images repeated", "uniform noise", "constant grey", "constant black", "NaN",
              "1 of 10 classes", "2 of 10 classes", "3 of 10 classes", "5 of 10 classes", "5 other classes"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bench_case_gets_its_ground_truth_verdict(evaluator, bench, name):
    images, truth = bench[name]
    check(evaluator.evaluate(images), truth)


@pytest.mark.slow
def test_short_gan_run_is_flagged_as_partial_collapse(evaluator, gan_samples):
    check(evaluator.evaluate(gan_samples), COLLAPSED)


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
