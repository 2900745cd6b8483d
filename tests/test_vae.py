"""VAE loss terms against their closed forms, and the model's shapes and ranges."""

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from models.vae import ConvVAE, interpolate_latents, kl_to_standard_normal, reconstruction_bce


def test_kl_matches_closed_form_of_torch_distributions():
    mu, logvar = torch.randn(5, 16), torch.randn(5, 16)
    q = Normal(mu, (0.5 * logvar).exp())
    expected = kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(1)
    assert torch.allclose(kl_to_standard_normal(mu, logvar), expected, atol=1e-5)


def test_kl_is_zero_at_the_prior():
    assert kl_to_standard_normal(torch.zeros(3, 8), torch.zeros(3, 8)).abs().max() < 1e-7


def test_reconstruction_is_summed_per_image():
    x = torch.rand(2, 1, 28, 28)
    logits = torch.zeros_like(x)  # p = 0.5 everywhere -> log 2 per pixel
    assert torch.allclose(reconstruction_bce(logits, x), torch.full((2,), 784 * torch.log(torch.tensor(2.0))))


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32), (3, 64)])
@pytest.mark.parametrize("regularized", [False, True])
def test_vae_shapes_and_range(channels, size, regularized):
    vae = ConvVAE(8, channels, size, regularized=regularized)
    logits, mu, logvar = vae(torch.rand(4, channels, size, size))
    assert logits.shape == (4, channels, size, size) and mu.shape == logvar.shape == (4, 8)
    samples = vae.decode(torch.randn(3, 8))
    assert samples.min() >= 0 and samples.max() <= 1


def test_interpolation_starts_and_ends_at_the_codes():
    a, b = torch.randn(8), torch.randn(8)
    path = interpolate_latents(a, b, 5)
    assert path.shape == (5, 8) and torch.allclose(path[0], a) and torch.allclose(path[-1], b)
    assert torch.allclose(path[2], (a + b) / 2)
