"""GAN generators and discriminators: a DCGAN-style conv pair and an MLP pair, in the `ARCHS` registry.

Conv nets handle 28x28 (the MNISTs), 32x32 and 64x64 images with any channel count: the
generator starts from a 7x7 (28) or 4x4 (powers of two) map and doubles it with transposed
convolutions; the discriminator mirrors it. The MLP pair works for any data shape, including
the 2-D toy sets.

The discriminator's normalisation (`D_NORMS`) is one of: none; batch norm after every hidden
layer but the first (the labs' DCGAN); spectral norm on every weight; layer-style norm
(GroupNorm with one group for conv maps, LayerNorm for MLP features), which is per sample.
"""

import math
from contextlib import contextmanager

import torch
from torch import nn

from models.errors import UserInputError

D_NORMS = ("none", "batch", "spectral", "layer")


def start_size(image_size: int) -> int:
    """Spatial size of the first generator map (and the last discriminator map)."""
    if image_size == 28:
        return 7
    if image_size >= 8 and image_size & (image_size - 1) == 0:
        return 4
    raise UserInputError(f"image_size: {image_size} is not supported by dcgan; use 28 or a power of two >= 8")


def num_upsamples(image_size: int) -> int:
    return int(math.log2(image_size // start_size(image_size)))


class DCGANGenerator(nn.Module):
    def __init__(self, z_dim: int, channels: int, image_size: int, width: int = 64):
        super().__init__()
        self.start = start_size(image_size)
        n = num_upsamples(image_size)
        top = width * 2 ** (n - 1)
        self.project = nn.Sequential(
            nn.Linear(z_dim, top * self.start ** 2, bias=False),
            nn.BatchNorm1d(top * self.start ** 2), nn.ReLU(True))
        layers = []
        for i in range(n - 1):
            c_in, c_out = top // 2 ** i, top // 2 ** (i + 1)
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        self.top = top

    def forward(self, z):
        return self.body(self.project(z).view(-1, self.top, self.start, self.start))


class DCGANDiscriminator(nn.Module):
    """Strided convs with LeakyReLU; the first conv is never normalised (DCGAN)."""

    def __init__(self, channels: int, image_size: int, width: int = 64, d_norm: str = "none"):
        super().__init__()
        wrap = spectral_wrapper(d_norm)
        n = num_upsamples(image_size)
        layers, c_in = [], channels
        for i in range(n):
            c_out = width * 2 ** i
            norm = hidden_norm(d_norm, c_out, conv=True) if i > 0 else []
            layers += [wrap(nn.Conv2d(c_in, c_out, 4, 2, 1)), *norm, nn.LeakyReLU(0.2, True)]
            c_in = c_out
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = wrap(nn.Linear(c_in * start_size(image_size) ** 2, 1))

    def forward(self, x):
        return self.head(self.body(x)).squeeze(1)


class MLPGenerator(nn.Module):
    def __init__(self, z_dim: int, data_shape: tuple, hidden: int = 256, tanh: bool = True):
        super().__init__()
        self.data_shape = tuple(data_shape)
        out = math.prod(self.data_shape)
        self.net = nn.Sequential(
            nn.Linear(z_dim, hidden), nn.ReLU(True),
            nn.Linear(hidden, hidden * 2), nn.ReLU(True),
            nn.Linear(hidden * 2, hidden * 4), nn.ReLU(True),
            nn.Linear(hidden * 4, out), nn.Tanh() if tanh else nn.Identity())

    def forward(self, z):
        return self.net(z).view(-1, *self.data_shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, data_shape: tuple, hidden: int = 256, d_norm: str = "none"):
        super().__init__()
        wrap = spectral_wrapper(d_norm)
        self.net = nn.Sequential(
            nn.Flatten(),
            wrap(nn.Linear(math.prod(data_shape), hidden * 2)), nn.LeakyReLU(0.2, True),
            wrap(nn.Linear(hidden * 2, hidden)), *hidden_norm(d_norm, hidden, conv=False), nn.LeakyReLU(0.2, True),
            wrap(nn.Linear(hidden, 1)))

    def forward(self, x):
        return self.net(x).squeeze(1)


def spectral_wrapper(d_norm: str):
    """Spectral norm on a layer's weight when d_norm is "spectral", else the layer unchanged."""
    return nn.utils.parametrizations.spectral_norm if d_norm == "spectral" else (lambda layer: layer)


def hidden_norm(d_norm: str, features: int, conv: bool) -> list[nn.Module]:
    """The normalisation after a hidden discriminator layer: none for "none" and "spectral"."""
    if d_norm == "batch":
        return [nn.BatchNorm2d(features) if conv else nn.BatchNorm1d(features)]
    if d_norm == "layer":
        return [nn.GroupNorm(1, features) if conv else nn.LayerNorm(features)]
    return []


def init_weights_(module: nn.Module) -> None:
    """The usual DCGAN init: conv/linear weights ~ N(0, 0.02), norm scales ~ N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.normal_(weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def build_dcgan(z_dim: int, data_shape: tuple, width: int, d_norm: str) -> tuple[nn.Module, nn.Module]:
    if len(data_shape) != 3 or data_shape[1] != data_shape[2]:
        raise UserInputError(f"arch: dcgan needs square images, data shape is {data_shape}; use mlp")
    c, size = data_shape[0], data_shape[1]
    g, d = DCGANGenerator(z_dim, c, size, width), DCGANDiscriminator(c, size, width, d_norm)
    init_weights_(g)
    init_weights_(d)
    return g, d


def build_mlp(z_dim: int, data_shape: tuple, width: int, d_norm: str) -> tuple[nn.Module, nn.Module]:
    # The MLPs keep PyTorch's fan-in init: without BatchNorm to rescale them, N(0, 0.02) weights
    # shrink the signal layer by layer until the generator's output no longer depends on z.
    g = MLPGenerator(z_dim, data_shape, hidden=width * 4, tanh=len(data_shape) == 3)
    return g, MLPDiscriminator(data_shape, hidden=width * 4, d_norm=d_norm)


# name -> builder(z_dim, data_shape, width, d_norm) -> (generator, discriminator)
ARCHS = {"dcgan": build_dcgan, "mlp": build_mlp}


def build_gan(arch: str, z_dim: int, data_shape: tuple, width: int = 64,
              d_norm: str = "none") -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) for data of `data_shape` (C, H, W) or (D,) for toy points."""
    return ARCHS[arch](z_dim, data_shape, width, d_norm)


@contextmanager
def evaluating(module: nn.Module):
    """Eval mode (BatchNorm running stats, no dropout) and no grad for the block, then the mode it had."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield module
    finally:
        module.train(was_training)
