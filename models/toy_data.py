"""The 2-D toy sets: how each is drawn, and the shape the toy evaluator measures samples against.

Each set is one `ToySet`: its sampler and its geometry (the centres of Gaussian modes, or the
circular arcs of a curve) with the noise scale σ around them. The geometry is declared beside
the sampler so that the formula's numbers live in one place; models/evaluation/toy.py reads it.
Points are raw coordinates (no scaling to [-1, 1]): the MLP generator draws them as they are.
"""

import math
from dataclasses import dataclass
from typing import Callable

import torch

RING_MODES, RING_RADIUS, RING_STD = 8, 2.0, 0.02
MOONS_NOISE = 0.05
SEMICIRCLE_RADIUS, SEMICIRCLE_OFFSET, SEMICIRCLE_STD = 10.0, 10.0, 1.0


@dataclass(frozen=True)
class Arc:
    """A circular arc: centre, radius and the angles (radians, at the centre) it spans, start < end."""
    center: tuple[float, float]
    radius: float
    start: float
    end: float


@dataclass(frozen=True)
class ToySet:
    """A toy distribution: `draw(n, seed)` -> (points n x 2, labels), and its regions: Gaussian mode
    centres or the arcs of a curve (one region per label), with the noise scale `std` around them."""
    draw: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]
    std: float
    region: str  # what one region is called in messages: "mode" or "half"
    centers: tuple = ()  # (x, y) of each Gaussian mode
    arcs: tuple = ()  # Arc of each part of the curve

    @property
    def num_regions(self) -> int:
        return len(self.centers) or len(self.arcs)


def ring_of_gaussians(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The classic mode-collapse test: 8 tight Gaussians evenly spaced on a circle."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(RING_MODES, (n,), generator=g)
    angle = labels.float() * (2 * math.pi / RING_MODES)
    centers = RING_RADIUS * torch.stack([angle.cos(), angle.sin()], dim=1)
    return centers + RING_STD * torch.randn(n, 2, generator=g), labels


def two_moons(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved, offset unit semicircles with isotropic noise (scikit-learn's make_moons)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(2, (n,), generator=g)
    t = torch.rand(n, generator=g) * math.pi
    upper = torch.stack([t.cos(), t.sin()], dim=1)
    lower = torch.stack([1 - t.cos(), 0.5 - t.sin()], dim=1)
    points = torch.where(labels[:, None] == 0, upper, lower)
    return points + MOONS_NOISE * torch.randn(n, 2, generator=g), labels


def two_semicircles(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The labs' toy set (assignment A5), exactly per its formula: theta ~ U(0, 2 pi), r ~ N(0, 1);
    x = ((10 + r) cos theta, (10 + r) sin theta + 10) if pi/2 <= theta <= 3 pi/2, else
    ((10 + r) cos theta, (10 + r) sin theta - 10). Label 0: the left half (centred at (0, 10)),
    1: the right half (centred at (0, -10)); together an S about 26 wide and 46 high."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.rand(n, generator=g, dtype=torch.float64) * (2 * math.pi)
    r = torch.randn(n, generator=g, dtype=torch.float64)
    left = (theta >= math.pi / 2) & (theta <= 3 * math.pi / 2)
    shift = torch.where(left, SEMICIRCLE_OFFSET, -SEMICIRCLE_OFFSET)
    radius = SEMICIRCLE_RADIUS + r
    points = torch.stack([radius * theta.cos(), radius * theta.sin() + shift], dim=1)
    return points.float(), (~left).long()


TOY_SETS = {
    "toy2d_ring": ToySet(ring_of_gaussians, RING_STD, "mode", centers=tuple(
        (RING_RADIUS * math.cos(2 * math.pi * k / RING_MODES), RING_RADIUS * math.sin(2 * math.pi * k / RING_MODES))
        for k in range(RING_MODES))),
    "toy2d_moons": ToySet(two_moons, MOONS_NOISE, "moon", arcs=(
        Arc((0.0, 0.0), 1.0, 0.0, math.pi), Arc((1.0, 0.5), 1.0, math.pi, 2 * math.pi))),
    "toy2d_semicircles": ToySet(two_semicircles, SEMICIRCLE_STD, "half", arcs=(
        Arc((0.0, SEMICIRCLE_OFFSET), SEMICIRCLE_RADIUS, math.pi / 2, 3 * math.pi / 2),
        Arc((0.0, -SEMICIRCLE_OFFSET), SEMICIRCLE_RADIUS, -math.pi / 2, math.pi / 2))),
}
