"""GAN losses as pure functions of discriminator outputs (logits), one pair per loss.

`d_<loss>(real_logits, fake_logits)` is minimised by the discriminator/critic and
`g_<loss>(fake_logits)` by the generator. WGAN's weight clipping and WGAN-GP's penalty are
separate (`clip_weights_`, `gradient_penalty`) because they act on the network, not on logits.
"""

import torch
import torch.nn.functional as F

LOSSES = ("bce", "hinge", "wgan", "wgan-gp")


def d_bce(real_logits, fake_logits, real_label: float = 1.0):
    """Standard GAN discriminator loss; real_label < 1 is one-sided label smoothing."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_label))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def g_bce(fake_logits):
    """Non-saturating generator loss: -log D(G(z))."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def d_hinge(real_logits, fake_logits):
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def g_hinge(fake_logits):
    return -fake_logits.mean()


def d_wasserstein(real_logits, fake_logits):
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


@torch.no_grad()
def clip_weights_(module: torch.nn.Module, clip_value: float) -> None:
    """WGAN's Lipschitz constraint: clamp every critic parameter to [-c, c] in place."""
    for p in module.parameters():
        p.clamp_(-clip_value, clip_value)


def discriminator_loss(loss: str, real_logits, fake_logits, real_label: float = 1.0):
    if loss == "bce":
        return d_bce(real_logits, fake_logits, real_label)
    if loss == "hinge":
        return d_hinge(real_logits, fake_logits)
    return d_wasserstein(real_logits, fake_logits)


def generator_loss(loss: str, fake_logits):
    if loss == "bce":
        return g_bce(fake_logits)
    if loss == "hinge":
        return g_hinge(fake_logits)
    return g_wasserstein(fake_logits)
