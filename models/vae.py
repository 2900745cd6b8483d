"""Convolutional VAE and its loss, with the seed report's per-image accounting.

Loss per image = summed pixel BCE (reconstruction) + beta * KL(q(z|x) || N(0, I)); the
trainer reports total, reconstruction and KL separately, averaged over images.
"""

import torch
import torch.nn.functional as F
from torch import nn

from models.nets import num_upsamples, start_size


class ConvVAE(nn.Module):
    """Strided-conv encoder to (mu, logvar); mirror decoder to pixel logits.

    `regularized=True` adds BatchNorm and dropout (the blog seed's "regularized VAE").
    """

    def __init__(self, latent_dim: int, channels: int = 1, image_size: int = 28, width: int = 32,
                 regularized: bool = False, dropout: float = 0.2):
        super().__init__()
        self.latent_dim = latent_dim
        self.start = start_size(image_size)
        n = num_upsamples(image_size)
        self.top = width * 2 ** (n - 1)
        flat = self.top * self.start ** 2

        def block(conv, c_out):
            extra = [nn.BatchNorm2d(c_out), nn.Dropout2d(dropout)] if regularized else []
            return [conv, *extra, nn.ReLU(True)]

        enc, c_in = [], channels
        for i in range(n):
            c_out = width * 2 ** i
            enc += block(nn.Conv2d(c_in, c_out, 4, 2, 1), c_out)
            c_in = c_out
        self.encoder = nn.Sequential(*enc, nn.Flatten())
        self.to_mu = nn.Linear(flat, latent_dim)
        self.to_logvar = nn.Linear(flat, latent_dim)
        self.from_z = nn.Sequential(nn.Linear(latent_dim, flat), nn.ReLU(True))
        dec = []
        for i in range(n - 1):
            c_in, c_out = self.top // 2 ** i, self.top // 2 ** (i + 1)
            dec += block(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), c_out)
        self.decoder = nn.Sequential(*dec, nn.ConvTranspose2d(width, channels, 4, 2, 1))

    def encode(self, x):
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h)

    def decode_logits(self, z):
        return self.decoder(self.from_z(z).view(-1, self.top, self.start, self.start))

    def decode(self, z):
        """Images in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decode_logits(z), mu, logvar


def reconstruction_bce(logits, x):
    """Per-image summed binary cross-entropy, shape (batch,)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def kl_to_standard_normal(mu, logvar):
    """Per-image KL(N(mu, exp(logvar)) || N(0, I)), closed form, shape (batch,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)


def interpolate_latents(z_from, z_to, steps: int):
    """Linear path between two latent codes, `steps` points including both ends."""
    t = torch.linspace(0, 1, steps, device=z_from.device)[:, None]
    return (1 - t) * z_from + t * z_to
