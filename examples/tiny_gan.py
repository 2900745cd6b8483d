"""A GAN written outside gantune and tuned by it, with no change to the package:

    python tuner/run.py --trainer examples.tiny_gan:make_trainer --space examples.tiny_gan:space \\
        --num-samples 8 --epochs 5 --limit 10000

An MLP generator and discriminator on flattened images, trained with the non-saturating BCE
loss. Nothing here imports gantune: `make_trainer` only follows the trainer protocol of
tuner/trainers.py (train_epoch, sample, state_dict, load_state_dict, epoch), and `space` is a
plain Optuna define-by-run function. gantune evaluates the samples (FID, KID, the collapse
detector), checkpoints the state, stops collapsed trials and ranks the results as for its own GANs.

`ignore_noise` (not searched; pin it with `--fixed ignore_noise=true`) makes the generator draw
every image from the same latent code: total mode collapse, which the detector must catch.
"""

import math
import time

import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits as bce


def space(trial) -> dict:
    """The hyperparameters to search; whatever is returned is added to every config as it is."""
    trial.suggest_float("lr", 1e-4, 3e-3, log=True)
    trial.suggest_categorical("hidden", [128, 256, 512])
    trial.suggest_categorical("z_dim", [16, 32, 64])
    trial.suggest_categorical("batch_size", [32, 64, 128])
    return {}


def mlp(sizes: list[int], last: nn.Module | None = None) -> nn.Sequential:
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers, *([last] if last else []))


class TinyGAN:
    def __init__(self, config: dict, images: torch.Tensor, device: torch.device):
        self.device, self.shape = device, tuple(images.shape[1:])
        self.seed, self.batch_size = config["seed"], config.get("batch_size", 64)
        self.z_dim, self.ignore_noise = config.get("z_dim", 32), bool(config.get("ignore_noise", False))
        hidden, pixels, lr = config.get("hidden", 256), math.prod(self.shape), config.get("lr", 2e-4)
        torch.manual_seed(self.seed)
        self.G = mlp([self.z_dim, hidden, hidden, pixels], nn.Sigmoid()).to(device)  # images in [0, 1]
        self.D = mlp([pixels, hidden, 1]).to(device)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr, betas=(0.5, 0.999))
        self.images = images.reshape(len(images), -1).to(device)
        self.steps_per_epoch = len(self.images) // self.batch_size
        self.noise_rng = torch.Generator().manual_seed(self.seed)
        self.fixed_z = self.noise(64)
        self.step = 0

    @property
    def epoch(self) -> float:
        return self.step / self.steps_per_epoch

    def noise(self, n: int) -> torch.Tensor:
        z = torch.randn(n, self.z_dim, generator=self.noise_rng)
        return (torch.zeros_like(z) if self.ignore_noise else z).to(self.device)

    def train_epoch(self) -> dict:
        started, d_sum, g_sum = time.perf_counter(), 0.0, 0.0
        epoch = self.step // self.steps_per_epoch
        order = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(self.seed + epoch))
        for i in range(self.steps_per_epoch):
            real = self.images[order[i * self.batch_size:(i + 1) * self.batch_size].to(self.device)]
            fake = self.G(self.noise(len(real)))
            ones, zeros = torch.ones(len(real), 1, device=self.device), torch.zeros(len(real), 1, device=self.device)
            d_loss = bce(self.D(real), ones) + bce(self.D(fake.detach()), zeros)
            self.opt_d.zero_grad()
            d_loss.backward()
            self.opt_d.step()
            g_loss = bce(self.D(fake), ones)  # non-saturating
            self.opt_g.zero_grad()
            g_loss.backward()
            self.opt_g.step()
            d_sum, g_sum = d_sum + d_loss.item(), g_sum + g_loss.item()
            self.step += 1
        d_loss, g_loss = d_sum / self.steps_per_epoch, g_sum / self.steps_per_epoch
        return {"epoch": self.epoch, "d_loss": d_loss, "g_loss": g_loss, "train_seconds": time.perf_counter() - started,
                "diverged": not (math.isfinite(d_loss) and math.isfinite(g_loss))}

    @torch.no_grad()
    def sample(self, n: int | None = None) -> torch.Tensor:
        z = self.fixed_z if n is None else self.noise(n)
        return self.G(z).reshape(len(z), *self.shape)

    def state_dict(self) -> dict:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict(), "step": self.step, "noise_rng": self.noise_rng.get_state(),
                "fixed_z": self.fixed_z}

    def load_state_dict(self, state: dict) -> None:
        for name in ("G", "D", "opt_g", "opt_d"):
            getattr(self, name).load_state_dict(state[name])
        self.step, self.fixed_z = state["step"], state["fixed_z"].to(self.device)
        self.noise_rng.set_state(state["noise_rng"])


def make_trainer(config: dict, data, device: torch.device) -> TinyGAN:
    """gantune calls this once per trial: the trial's config, the training data, the trial's device."""
    return TinyGAN(config, data.images, device)
