"""The k-NN statistics of models/evaluation/manifold.py: by hand on tiny 1-D sets, against the
papers' formulas written out naively on random Gaussians, and their closed forms for identical
distributions (density about 1, coverage about 1 - (1/2)^k)."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from models.evaluation import manifold

REAL = np.array([[0.0], [1.0], [3.0], [7.0]])
FAKE = np.array([[0.5], [2.9], [12.0], [20.0]])


def statistics(real: np.ndarray, fake: np.ndarray, k: int) -> dict:
    return manifold.precision_recall_density_coverage(
        manifold.pairwise_distances(real, fake), manifold.kth_nearest(manifold.within_set_distances(real), k),
        manifold.kth_nearest(manifold.within_set_distances(fake), k), k)


def test_radii_are_the_kth_nearest_other_sample():
    within = manifold.within_set_distances(REAL)
    assert manifold.kth_nearest(within, 1).tolist() == [1, 1, 2, 4]
    assert manifold.kth_nearest(within, 2).tolist() == [3, 2, 3, 6]
    assert manifold.kth_nearest(manifold.within_set_distances(FAKE), 2) == pytest.approx([11.5, 9.1, 9.1, 17.1])


def test_k1_by_hand():
    # real radii [1, 1, 2, 4]; fake radii [2.4, 2.4, 8, 8]. Distances real (rows) to fake (columns):
    #   0: 0.5 2.9 12 20 | 1: 0.5 1.9 11 19 | 3: 2.5 0.1 9 17 | 7: 6.5 4.1 5 13
    # inside real balls: 0.5 (balls of 0 and 1), 2.9 (ball of 3); 7's ball (radius 4) holds none (5 is outside).
    # precision: 2 of 4 fakes inside; density: 3 hits / (k=1 * 4); coverage: 3 of 4 balls hold a fake;
    # recall: 0, 1, 3 lie within 2.4 of 0.5 or 2.9, and 7 within 8 of 12.
    assert statistics(REAL, FAKE, 1) == {"precision": 0.5, "recall": 1.0, "density": 0.75, "manifold_coverage": 0.75}


def test_k2_by_hand():
    # real radii [3, 2, 3, 6], fake radii [11.5, 9.1, 9.1, 17.1]: every real ball holds two fakes (0 and 1:
    # 0.5 and 2.9; 3: 0.5 and 2.9; 7: 2.9 and 12), 20 is in none. precision 3/4, density 8 / (2 * 4).
    assert statistics(REAL, FAKE, 2) == {"precision": 0.75, "recall": 1.0, "density": 1.0, "manifold_coverage": 1.0}


def test_an_outlying_real_sample_is_outside_recall_by_hand():
    # real 40 gets radius 37 (to 3) and holds 12 and 20: precision 1, density (1+1+1+2)/4; no fake's
    # radius (2.4, 2.4, 8, 8) reaches 40 (nearest: 20 at distance 20), so recall is 3/4.
    real = np.array([[0.0], [1.0], [3.0], [40.0]])
    assert statistics(real, FAKE, 1) == {"precision": 1.0, "recall": 0.75, "density": 1.25, "manifold_coverage": 1.0}


def test_a_sample_on_a_balls_edge_is_outside():
    # Naeem et al.'s strict `<`: real radii [2, 2, 4]; -2 sits on the edge of 0's ball, 10 on 6's
    real = np.array([[0.0], [2.0], [6.0]])
    assert statistics(real, np.array([[-2.0], [10.0]]), 1)["precision"] == 0.0
    assert statistics(real, np.array([[-1.9], [9.9]]), 1)["precision"] == 1.0


def test_share_closer_than_is_strict():
    assert manifold.share_closer_than(np.array([0.1, 0.5, 2.0]), 0.5) == pytest.approx(1 / 3)


def test_nearest_distances_in_blocks_match_one_matrix():
    rng = np.random.default_rng(0)
    queries, reference = rng.normal(size=(30, 8)), rng.normal(size=(101, 8))
    expected = cdist(queries, reference).min(axis=1)
    assert manifold.nearest_distances(queries, reference, chunk=7) == pytest.approx(expected, rel=1e-9)


def naive_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict:
    """The papers' definitions, written out loop by loop with scipy's distances."""
    real_radius = [np.sort(np.delete(cdist(real[i:i + 1], real)[0], i))[k - 1] for i in range(len(real))]
    fake_radius = [np.sort(np.delete(cdist(fake[j:j + 1], fake)[0], j))[k - 1] for j in range(len(fake))]
    d = cdist(real, fake)
    inside = [[d[i, j] < real_radius[i] for j in range(len(fake))] for i in range(len(real))]
    return {"precision": np.mean([any(inside[i][j] for i in range(len(real))) for j in range(len(fake))]),
            "recall": np.mean([any(d[i, j] < fake_radius[j] for j in range(len(fake))) for i in range(len(real))]),
            "density": sum(map(sum, inside)) / (k * len(fake)),
            "manifold_coverage": np.mean([any(row) for row in inside])}


@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_matches_the_formulas_written_out_on_gaussians(shift):
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(300, 16)), rng.normal(size=(250, 16)) + shift
    got = statistics(real, fake, manifold.K)
    assert got == pytest.approx(naive_prdc(real, fake, manifold.K), abs=1e-12)


def expected_coverage(num_real: int, num_fake: int, k: int) -> float:
    """Naeem et al. 2020, eq. 6: coverage's expectation for identical distributions."""
    return 1 - float(np.prod([(num_real - i) / (num_fake + num_real - i) for i in range(1, k + 1)]))


@pytest.mark.parametrize("dim", [8, 64])
def test_identical_gaussians_give_density_one_and_coverage_one_minus_half_to_the_k(dim):
    rng = np.random.default_rng(dim)
    n, k = 2000, manifold.K
    values = [statistics(rng.normal(size=(n, dim)), rng.normal(size=(n, dim)), k) for _ in range(3)]
    density = np.mean([v["density"] for v in values])
    coverage = np.mean([v["manifold_coverage"] for v in values])
    assert expected_coverage(n, n, k) == pytest.approx(1 - 0.5 ** k, abs=1e-3)
    assert coverage == pytest.approx(1 - 0.5 ** k, abs=0.01)  # measured: 0.971 (dim 8), 0.967 (dim 64)
    assert density == pytest.approx(1.0, abs=0.05)  # measured: 0.987 (dim 8), 0.993 (dim 64)
    # precision and recall have no closed form: high, and lower in more dimensions (0.95 at 8, 0.71 at 64)
    assert all(v["precision"] > 0.6 and v["recall"] > 0.6 for v in values)


def test_a_shifted_gaussian_loses_precision_coverage_and_density():
    rng = np.random.default_rng(2)
    same = statistics(rng.normal(size=(1000, 16)), rng.normal(size=(1000, 16)), manifold.K)
    shifted = statistics(rng.normal(size=(1000, 16)), rng.normal(size=(1000, 16)) + 1.0, manifold.K)
    assert all(shifted[key] < same[key] - 0.3 for key in ("precision", "density", "manifold_coverage"))


def test_one_point_repeated_has_no_recall_and_copies_are_duplicates():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(500, 16))
    repeated = np.repeat(rng.normal(size=(5, 16)), 100, axis=0)
    assert statistics(real, repeated, manifold.K)["recall"] == 0.0
    nearest = manifold.within_set_distances(repeated).min(axis=1)
    cutoff = np.percentile(manifold.within_set_distances(real).min(axis=1), manifold.DUPLICATE_PERCENTILE)
    assert manifold.share_closer_than(nearest, cutoff) == 1.0
