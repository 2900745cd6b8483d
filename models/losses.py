"""GAN losses: the one registry (`LOSSES`) the config, the CLI, the search space and the trainer read.

Each entry pairs a discriminator loss `d_loss(real_logits, fake_logits, params)` with a generator
loss `g_loss(fake_logits)`, both small pure functions of logits; `params` holds the loss's own
hyperparameters (its `specific` fields, e.g. {"clip_value": 0.01}). What acts on the network rather
than on logits is separate: a D-side `penalty(critic, real, fake, params)` added to the D loss
(WGAN-GP) and `after_d_step(critic, params)` run after each D update (WGAN's weight clipping).

Adding a loss is one `register_loss(Loss(...))` call: config validation, `models.train --loss`,
`search_spaces.gan.gan_space` and `GANTrainer` then accept it.
"""

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossParam:
    """A loss-specific hyperparameter: its default, the values a config may set (low < value <= high),
    and what the search tries: `choices`, or else log-uniformly over `search_range`."""
    default: float
    help: str
    low: float = 0.0
    high: float = math.inf
    search_range: tuple[float, float] | None = None
    choices: tuple | None = None


def raw_logits(logits: torch.Tensor) -> torch.Tensor:
    """The default score: a critic's outputs are reported as they are."""
    return logits


@dataclass(frozen=True)
class Loss:
    """One registry entry: everything GANTrainer, GANConfig, models.train and the search space need."""
    name: str
    d_loss: Callable  # (real_logits, fake_logits, params) -> scalar, minimised by D
    g_loss: Callable  # (fake_logits) -> scalar, minimised by G
    # lr, optimizer, betas (beta1, beta2), n_critic: what a config leaves as None
    defaults: dict
    specific: dict[str, LossParam] = field(default_factory=dict)
    penalty: Callable | None = None  # (critic, real, fake, params) -> scalar added to the D loss
    after_d_step: Callable | None = None  # (critic, params), after each D optimizer step
    score: Callable = raw_logits  # logits -> what d_real / d_fake report (probabilities for bce)
    excluded_d_norms: tuple = ()  # discriminator normalisations this loss cannot train with
    why_excluded: str = ""


LOSSES: dict[str, Loss] = {}


def register_loss(entry: Loss) -> Loss:
    """Add a loss to the registry. A second entry with the same name is a programmer error."""
    if entry.name in LOSSES:
        raise ValueError(f"loss {entry.name!r} is already registered")
    missing = {"lr", "optimizer", "betas", "n_critic"} - entry.defaults.keys()
    if missing:
        raise ValueError(f"loss {entry.name!r}: defaults lack {', '.join(sorted(missing))}")
    LOSSES[entry.name] = entry
    return entry


def specific_params() -> dict[str, LossParam]:
    """Every registered loss's specific fields by name (a name two losses share means the same)."""
    return {name: param for entry in LOSSES.values() for name, param in entry.specific.items()}


def d_bce(real_logits, fake_logits, params):
    """Standard GAN discriminator loss; real_label < 1 is one-sided label smoothing."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, params["real_label"]))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def g_bce(fake_logits):
    """Non-saturating generator loss: -log D(G(z))."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def d_hinge(real_logits, fake_logits, params):
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def g_hinge(fake_logits):
    return -fake_logits.mean()


def d_wasserstein(real_logits, fake_logits, params):
    """Critic loss: minus the estimated Wasserstein-1 distance."""
    return fake_logits.mean() - real_logits.mean()


def g_wasserstein(fake_logits):
    return -fake_logits.mean()


def gradient_penalty(critic, real, fake):
    """WGAN-GP: E[(||grad critic(x_hat)|| - 1)^2] at random interpolates x_hat."""
    alpha = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def weighted_gradient_penalty(critic, real, fake, params):
    return params["gp_lambda"] * gradient_penalty(critic, real, fake)


@torch.no_grad()
def clip_weights_(critic: torch.nn.Module, params) -> None:
    """WGAN's Lipschitz constraint: clamp every critic parameter to [-c, c] in place."""
    for p in critic.parameters():
        p.clamp_(-params["clip_value"], params["clip_value"])


# lr, optimizer, betas, n_critic: DCGAN for bce/hinge, the WGAN and WGAN-GP papers for theirs.
DCGAN_DEFAULTS = dict(lr=2e-4, optimizer="adam", betas=(0.5, 0.999), n_critic=1)

register_loss(Loss(
    "bce", d_bce, g_bce, DCGAN_DEFAULTS, score=torch.sigmoid,
    specific={"real_label": LossParam(1.0, "bce real target; 0.9 is one-sided label smoothing",
                                      low=0.0, high=1.0, choices=(1.0, 0.9))}))
register_loss(Loss("hinge", d_hinge, g_hinge, DCGAN_DEFAULTS))
register_loss(Loss(
    "wgan", d_wasserstein, g_wasserstein, dict(lr=5e-5, optimizer="rmsprop", betas=(0.5, 0.999), n_critic=5),
    after_d_step=clip_weights_,
    specific={"clip_value": LossParam(0.01, "wgan critic weight clip", search_range=(0.005, 0.1))}))
register_loss(Loss(
    "wgan-gp", d_wasserstein, g_wasserstein, dict(lr=1e-4, optimizer="adam", betas=(0.5, 0.9), n_critic=5),
    penalty=weighted_gradient_penalty,
    specific={"gp_lambda": LossParam(10.0, "wgan-gp gradient-penalty weight", search_range=(1.0, 20.0))},
    excluded_d_norms=("batch",),
    why_excluded="its gradient penalty is per sample and batch norm mixes the samples of a batch"))
