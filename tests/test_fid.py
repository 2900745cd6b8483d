"""FID/KID maths in closed form, the feature network, and FID sanity on real Fashion-MNIST.

Fashion-MNIST's feature net is the pinned one shipped with the package; other nets (offline
MNIST's) and the reference statistics are cached in $GANTUNE_CACHE_DIR when set (fast repeated
local runs), else in one folder under pytest's session temp dir, so a fresh clone on a fresh
machine trains MNIST's net once per session and its accuracy test checks real training.
"""

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from models.data import Dataset, load_dataset
from models.errors import UserInputError
from models.evaluation import Evaluator, feature_statistics, frechet_distance, kid
from models.evaluation.evaluator import net_checksum
from models.evaluation.features import (CACHE_DIR_ENV, FEATURE_DIM, PINNED_DIR, accuracy, feature_net_identity,
                                        feature_net_path, load_or_train_feature_net)

EVAL_SAMPLES = 2000


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return Path(os.environ.get(CACHE_DIR_ENV) or tmp_path_factory.getbasetemp() / "gantune-cache")


@pytest.fixture(scope="session")
def fashion_evaluator(data_dir, cache_dir):
    return Evaluator.for_dataset("fashion_mnist", data_dir, cache_dir=cache_dir, n_samples=EVAL_SAMPLES)


def real_sample(data: Dataset, n: int, seed: int = 0) -> torch.Tensor:
    return data.images[torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]]


# --- closed forms -------------------------------------------------------------------------

def test_frechet_distance_of_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 8))
    sigma = a.T @ a / 50
    assert frechet_distance(np.ones(8), sigma, np.ones(8), sigma) == pytest.approx(0, abs=1e-8)


def test_frechet_distance_of_shifted_means_is_squared_shift():
    mu = np.array([1.0, -2.0, 0.5])
    shift = np.array([0.3, 0.4, -1.2])
    sigma = np.diag([1.0, 2.0, 3.0])
    assert frechet_distance(mu, sigma, mu + shift, sigma) == pytest.approx(shift @ shift, rel=1e-9)


def test_frechet_distance_of_diagonal_covariances_matches_closed_form():
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 1.0])
    expected = 1.0 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()  # means differ by 1 in one coordinate
    got = frechet_distance(np.zeros(3), np.diag(a), np.array([1.0, 0, 0]), np.diag(b))
    assert got == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_survives_singular_covariances():
    singular = np.diag([1.0, 0.0, 0.0])
    got = frechet_distance(np.zeros(3), singular, np.zeros(3), np.diag([0.0, 1.0, 0.0]))
    assert got == pytest.approx(2.0, abs=1e-3)


def test_feature_statistics_match_numpy():
    x = np.random.default_rng(1).normal(size=(300, 5))
    mu, sigma = feature_statistics(x)
    np.testing.assert_allclose(mu, x.mean(0))
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False))


def test_too_few_samples_for_the_feature_dimension_is_a_user_error():
    with pytest.raises(UserInputError, match="at least 128"):
        feature_statistics(np.zeros((100, 128)))


def test_kid_is_zero_for_same_distribution_and_positive_otherwise():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(2000, 16)), rng.normal(size=(2000, 16))
    same_mean, same_std = kid(a, b, num_subsets=20, subset_size=500)
    shifted_mean, shifted_std = kid(a, b + 0.5, num_subsets=20, subset_size=500)
    assert abs(same_mean) < 3 * same_std + 1e-3
    assert shifted_mean > 10 * shifted_std > 0


# --- the feature network --------------------------------------------------------------------

@pytest.mark.slow
def test_feature_net_reaches_90_percent_on_fashion_mnist(fashion_evaluator, fashion_test):
    assert accuracy(fashion_evaluator.net, fashion_test) >= 0.90


@pytest.mark.slow
def test_feature_net_reaches_98_percent_on_offline_mnist(data_dir, cache_dir):
    train = load_dataset("mnist", data_dir, train=True, download=False)
    test = load_dataset("mnist", data_dir, train=False, download=False)
    net, _ = load_or_train_feature_net(train, test, cache_dir)
    assert accuracy(net, test) >= 0.98


def test_the_pinned_fashion_net_is_used_as_it_is_and_scores_its_recorded_accuracy(fashion_train, fashion_test,
                                                                                   tmp_path):
    """Fashion-MNIST's net ships with the package: an empty cache gets it, not a retrained net, and
    nothing is written there; the test accuracy it records is what it scores on the held-out split."""
    net, meta = load_or_train_feature_net(fashion_train, fashion_test, tmp_path)
    assert not meta["retrained"] and not any(tmp_path.iterdir())
    identity = feature_net_identity(fashion_train, tmp_path)
    assert Path(identity["path"]).parent == PINNED_DIR and identity["weights_sha256"] == net_checksum(net)
    assert accuracy(net, fashion_test) == pytest.approx(meta["test_accuracy"], abs=1e-6)
    assert meta["test_accuracy"] > 0.9


def test_checksum_mismatch_retrains_instead_of_reusing(data_dir, tmp_path):
    full = load_dataset("mnist", data_dir, train=True, download=False)
    small = Dataset("mnist", full.images[:512].clone(), full.labels[:512].clone(), 10)
    test = Dataset("mnist", full.images[512:768], full.labels[512:768], 10)
    _, first = load_or_train_feature_net(small, test, tmp_path)
    _, again = load_or_train_feature_net(small, test, tmp_path)
    assert first["retrained"] and not again["retrained"]

    path = feature_net_path(tmp_path, "mnist", first["checksum"])
    stale = torch.load(path, weights_only=True)
    stale["checksum"] = "0" * 64
    torch.save(stale, path)
    _, after_tamper = load_or_train_feature_net(small, test, tmp_path)
    assert after_tamper["retrained"] and after_tamper["checksum"] == first["checksum"]

    for foreign in ({"a": 1}, [1, 2], {"checksum": first["checksum"], "arch": first["arch"]}):
        torch.save(foreign, path)  # a valid torch file of another shape: retrained over, like a corrupt one
        _, after_foreign = load_or_train_feature_net(small, test, tmp_path)
        assert after_foreign["retrained"] and after_foreign["checksum"] == first["checksum"], foreign

    small.images[0, 0, 0, 0] += 0.5  # other data: a different checksum, never the old net
    _, other = load_or_train_feature_net(small, test, tmp_path)
    assert other["retrained"] and other["checksum"] != first["checksum"]


# --- FID on real Fashion-MNIST ----------------------------------------------------------------

def test_heldout_real_data_scores_near_the_floor(fashion_evaluator, fashion_test):
    result = fashion_evaluator.evaluate(real_sample(fashion_test, EVAL_SAMPLES, seed=1))
    assert result["fid_floor"] > 0
    # measured: held-out FID 1.6-2.1 against a floor of 3.8 (the floor's training side is a
    # 2,000-image sample, the reference is all 60,000); |KID| <= 0.33, noise sigma=0.05 gives 7.6
    assert result["fid"] < result["fid_floor"]
    assert abs(result["kid"]) < 1.0


def test_fid_grows_with_added_noise(fashion_evaluator, fashion_test):
    clean = real_sample(fashion_test, EVAL_SAMPLES, seed=2)
    g = torch.Generator().manual_seed(0)
    fids = [fashion_evaluator.evaluate((clean + sigma * torch.randn(clean.shape, generator=g)).clamp(0, 1))["fid"]
            for sigma in (0.0, 0.05, 0.1, 0.2, 0.4)]
    assert all(a < b for a, b in zip(fids, fids[1:])), fids


def test_single_class_fid_is_far_above_balanced(fashion_evaluator, fashion_test):
    balanced = fashion_evaluator.evaluate(real_sample(fashion_test, EVAL_SAMPLES, seed=3))
    one_class = fashion_test.images[fashion_test.labels == 0][:EVAL_SAMPLES // 2]
    single = fashion_evaluator.evaluate(one_class)
    assert single["fid"] > 100 * balanced["fid"]  # measured: 646 vs 1.7
    assert single["kid"] > 100 * abs(balanced["kid"])  # measured: 243 vs <= 0.33


def digest(path: Path) -> tuple[int, str]:
    return path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def test_floor_is_cached_per_sample_size(data_dir, tmp_path):
    """Each sample size's floor is computed once (a recomputation would return a new float, not the
    same object), from reference statistics that a second Evaluator reads back from the cache file
    untouched instead of recomputing and rewriting it. The cache is this test's own, so no other
    process (a parallel test worker) can be the one that writes it."""
    evaluator = Evaluator.for_dataset("fashion_mnist", data_dir, cache_dir=tmp_path, n_samples=EVAL_SAMPLES)
    for n in (EVAL_SAMPLES, 500):
        assert evaluator.fid_floor(n) is evaluator.fid_floor(n)
    assert evaluator.fid_floor(500) > evaluator.fid_floor(EVAL_SAMPLES)
    cached = list(tmp_path.iterdir())
    assert [p.name.split("-")[0] for p in cached] == ["reference"], cached  # the net is the pinned one
    before = {p: digest(p) for p in cached}
    again = Evaluator.for_dataset("fashion_mnist", data_dir, cache_dir=tmp_path, n_samples=EVAL_SAMPLES)
    assert {p: digest(p) for p in cached} == before
    assert again.fid_floor(EVAL_SAMPLES) == evaluator.fid_floor(EVAL_SAMPLES)


def test_evaluate_returns_exactly_the_documented_keys_as_python_types(fashion_evaluator, fashion_test):
    result = fashion_evaluator.evaluate(real_sample(fashion_test, 500, seed=4))
    assert set(result) == {"fid", "fid_floor", "kid", "coverage", "entropy", "kl_to_labels", "diversity",
                           "precision", "recall", "density", "manifold_coverage", "duplicate_share",
                           "memorized_share", "collapse_score", "collapsed", "diverged", "memorized", "reasons"}
    assert all(type(result[k]) is float for k in ("fid", "fid_floor", "kid", "coverage", "entropy",
                                                   "kl_to_labels", "diversity", "precision", "recall", "density",
                                                   "manifold_coverage", "duplicate_share", "memorized_share",
                                                   "collapse_score"))
    assert all(type(result[k]) is bool for k in ("collapsed", "diverged", "memorized"))
    assert all(isinstance(reason, str) for reason in result["reasons"])


def test_evaluator_survives_pickling(fashion_evaluator, fashion_test):
    images = real_sample(fashion_test, 500, seed=5)
    clone = pickle.loads(pickle.dumps(fashion_evaluator)).to("cpu")
    assert clone.evaluate(images) == fashion_evaluator.evaluate(images)


# --- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("images, message", [
    (torch.rand(500, 3, 28, 28), "shape N x 1 x 28 x 28"),
    (torch.rand(500, 28, 28), "shape N x 1 x 28 x 28"),
    (torch.rand(FEATURE_DIM - 1, 1, 28, 28), f"at least {FEATURE_DIM}"),
    (torch.rand(500, 1, 28, 28) * 2 - 1, r"in \[0, 1\].*from_gan_range"),
    (torch.rand(500, 1, 28, 28) + 0.01, r"in \[0, 1\]"),
    (np.random.rand(500, 1, 28, 28), "torch.Tensor"),
])
def test_bad_images_are_user_errors(fashion_evaluator, images, message):
    with pytest.raises(UserInputError, match=message):
        fashion_evaluator.evaluate(images)
