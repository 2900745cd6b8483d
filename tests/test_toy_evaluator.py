"""The 2-D toy sets and their evaluator: the labs' semicircles per their formula, the classic
mode-collapse measures (modes covered, high-quality share, curve share, balance, sliced
Wasserstein) on samplers whose answer is known, and the verdict they feed."""

import math

import numpy as np
import pytest
import torch

from models.data import load_dataset
from models.evaluation import evaluator_for
from models.evaluation.toy import ToyEvaluator, distances_to_arcs, sliced_wasserstein
from models.toy_data import Arc

N = 2000


@pytest.fixture(scope="module")
def ring():
    return ToyEvaluator.for_dataset("toy2d_ring", n_samples=N)


@pytest.fixture(scope="module")
def semicircles():
    return ToyEvaluator.for_dataset("toy2d_semicircles", n_samples=N)


def draw(name: str, n: int = N, seed: int = 7):
    """A perfect sampler: fresh draws of the real distribution (another seed than the evaluator's)."""
    return load_dataset(name, toy_size=n, seed=seed)


def test_semicircles_follow_the_labs_formula():
    """theta ~ U(0, 2 pi), r ~ N(0, 1): the left half (pi/2 <= theta <= 3 pi/2) lies on the circle of
    radius 10 + r about (0, 10), the right half on the one about (0, -10); each half holds half the points."""
    data = load_dataset("toy2d_semicircles", toy_size=20000)
    points, left = data.images.double(), data.labels == 0
    assert data.num_classes == 2 and abs(left.double().mean().item() - 0.5) < 0.02
    for half, center, side in ((left, (0.0, 10.0), -1), (~left, (0.0, -10.0), 1)):
        offset = points[half] - torch.tensor(center, dtype=torch.float64)
        r = offset.norm(dim=1) - 10
        assert abs(r.mean().item()) < 0.03 and abs(r.std().item() - 1) < 0.03
        assert (side * offset[:, 0] >= -1e-6).all()  # cos theta <= 0 on the left half, >= 0 on the right
    assert points[:, 0].abs().max() < 15 and 21 < points[:, 1].abs().max() < 25  # about 26 wide, 46 high


def test_perfect_ring_sampler_covers_all_eight_modes_with_high_quality_samples(ring):
    result = ring.evaluate(draw("toy2d_ring").images)
    assert result["coverage"] == 8 and result["high_quality_share"] >= 0.95
    assert not result["collapsed"] and result["balance"] > 0.8
    assert result["fid"] < 0.05 and result["sliced_wasserstein"] < 0.1  # three modes: 4 and 1


def test_ring_sampler_drawing_three_modes_covers_three_and_is_collapsed(ring):
    data = draw("toy2d_ring", n=4 * N)
    result = ring.evaluate(data.images[data.labels < 3][:N])
    assert result["coverage"] == 3 and result["high_quality_share"] >= 0.95
    assert result["collapsed"] and not result["diverged"] and result["balance"] == 0
    assert any(reason.startswith("coverage 38%") for reason in result["reasons"])


def test_a_blob_with_the_rings_spread_fools_the_gaussian_frechet_distance_not_the_verdict(ring):
    """`fid` compares fitted Gaussians only: a Gaussian blob with the ring's mean and covariance
    scores near the floor. No sample lies within 3 sigma of a mode, so the verdict makes it lose."""
    real = draw("toy2d_ring").images
    blob = real.mean(0) + torch.randn(N, 2, generator=torch.Generator().manual_seed(1)) * real.std(0)
    result = ring.evaluate(blob)
    assert result["fid"] < 0.05
    assert result["coverage"] == 0 and result["high_quality_share"] < 0.01 and result["collapsed"]
    assert result["sliced_wasserstein"] > 4 * result["sliced_wasserstein_floor"]


def test_semicircle_sampler_is_healthy_and_one_half_alone_is_collapsed(semicircles):
    healthy = semicircles.evaluate(draw("toy2d_semicircles").images)
    assert healthy["coverage"] == 2 and healthy["high_quality_share"] >= 0.99 and healthy["balance"] > 0.9
    assert not healthy["collapsed"] and healthy["reasons"] == []
    data = draw("toy2d_semicircles", n=3 * N)
    one_half = semicircles.evaluate(data.images[data.labels == 0][:N])
    assert one_half["coverage"] == 1 and one_half["balance"] == 0 and one_half["high_quality_share"] >= 0.99
    assert one_half["collapsed"] and one_half["sliced_wasserstein"] > 10 * healthy["sliced_wasserstein"]


def test_non_finite_points_are_diverged(semicircles):
    points = draw("toy2d_semicircles").images.clone()
    points[5, 1] = math.nan
    result = semicircles.evaluate(points)
    assert result["diverged"] and result["collapsed"] and result["fid"] == math.inf


def test_distance_to_an_arc_is_to_its_circle_within_its_angles_else_to_its_nearer_end():
    upper = Arc((0.0, 0.0), 2.0, 0.0, math.pi)
    points = np.array([[0.0, 3.0], [0.0, 0.0], [3.0, -1.0], [-2.0, -2.0]])
    assert distances_to_arcs(points, [upper])[:, 0] == pytest.approx([1.0, 2.0, math.hypot(1, 1), 2.0])
    right = Arc((0.0, -10.0), 10.0, -math.pi / 2, math.pi / 2)  # an arc across angle 0
    assert distances_to_arcs(np.array([[11.0, -10.0], [-1.0, -10.0]]), [right])[:, 0] == pytest.approx(
        [1.0, math.hypot(1, 10)])


def test_sliced_wasserstein_of_a_shifted_copy_is_the_mean_projected_shift():
    points = np.random.default_rng(0).normal(size=(500, 2))
    shift = 0.3
    expected = shift * np.abs(np.cos(np.arange(64) * math.pi / 64)).mean()  # about 2 / pi of the shift
    assert sliced_wasserstein(points + [shift, 0.0], points) == pytest.approx(expected)
    assert sliced_wasserstein(points, points) == 0


def test_toy_sets_get_the_toy_evaluator():
    assert isinstance(evaluator_for("toy2d_moons", n_samples=200), ToyEvaluator)


def test_a_trial_hands_toy_points_to_the_evaluator_in_the_datas_coordinates():
    """The built-in GAN's protocol maps images from [-1, 1] to [0, 1]; points must stay as drawn."""
    from models.config import GANConfig
    from models.gan_trainer import GANTrainer
    from tuner.trainers import gan

    data = load_dataset("toy2d_ring", toy_size=256)
    trainer = gan({**GANConfig(arch="mlp", width=8).to_dict(), "model": "gan", "dataset": "toy2d_ring"}, data, "cpu")
    assert torch.equal(trainer.sample(), GANTrainer.sample(trainer))  # the fixed noise, unmapped
