"""VAE trainer, independent of Ray, with the same shape of API as the GAN trainer."""

import math
import time

import torch
from tqdm.auto import tqdm

from models.config import VAEConfig
from models.data import Dataset, DeviceBatches
from models.errors import UserInputError
from models.nets import evaluating
from models.rng import capture_rng, restore_rng
from models.vae import ConvVAE, interpolate_latents, kl_to_standard_normal, reconstruction_bce

FIXED_SAMPLES = 64


class VAETrainer:
    def __init__(self, config: VAEConfig, data: Dataset, device: str | torch.device = "cpu"):
        if not data.is_image:
            raise UserInputError(f"dataset: the VAE needs images, {data.name} holds points; use a GAN with arch mlp")
        self.config = c = config
        self.device = torch.device(device)
        torch.manual_seed(c.seed)  # weight init, dropout and the reparameterisation noise
        self.batches = DeviceBatches(data.images.to(self.device), c.batch_size, c.seed)
        channels, size = data.shape[0], data.shape[1]
        self.model = ConvVAE(c.latent_dim, channels, size, c.width, c.regularized, c.dropout).to(self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=c.lr, fused=self.device.type == "cuda")
        self.sample_rng = torch.Generator(device=self.device).manual_seed(c.seed)
        self.fixed_z = self.latents(FIXED_SAMPLES)
        self.step = 0

    @property
    def epoch(self) -> float:
        return self.step / len(self.batches)

    def latents(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.config.latent_dim, device=self.device, generator=self.sample_rng)

    def train_epoch(self, progress: bool = False) -> dict:
        return self.train_steps(len(self.batches) - self.step % len(self.batches), progress)

    def train_steps(self, num_steps: int, progress: bool = False) -> dict:
        c = self.config
        self.model.train()
        sums = torch.zeros(3, device=self.device)  # recon, kl, grad norm (each summed over batches)
        started = time.perf_counter()
        for _ in tqdm(range(num_steps), desc=f"epoch {int(self.epoch) + 1}", disable=not progress, leave=False):
            x = self.batches.batch(self.step)
            logits, mu, logvar = self.model(x)
            recon = reconstruction_bce(logits, x).mean()
            kl = kl_to_standard_normal(mu, logvar).mean()
            loss = recon + c.beta * kl
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            grad = torch.nn.utils.get_total_norm([p.grad for p in self.model.parameters() if p.grad is not None])
            self.opt.step()
            self.step += 1
            sums += torch.stack([recon.detach(), kl.detach(), grad])
        recon, kl, grad = (v / num_steps for v in sums.tolist())
        seconds = time.perf_counter() - started
        return {
            "loss": recon + c.beta * kl, "recon": recon, "kl": kl, "grad_norm": grad,
            "images_per_s": num_steps * c.batch_size / seconds, "train_seconds": seconds,
            "epoch": self.epoch, "step": self.step,
            "diverged": not all(map(math.isfinite, (recon, kl))),
        }

    def test_loss(self, images: torch.Tensor, batch_size: int = 1000) -> dict:
        """Per-image total/recon/KL on held-out images (posterior mean, no sampling noise)."""
        recon = kl = 0.0
        with evaluating(self.model) as model:
            for i in range(0, len(images), batch_size):
                x = images[i:i + batch_size].to(self.device)
                mu, logvar = model.encode(x)
                recon += reconstruction_bce(model.decode_logits(mu), x).sum().item()
                kl += kl_to_standard_normal(mu, logvar).sum().item()
        n = len(images)
        return {"test_loss": (recon + self.config.beta * kl) / n, "test_recon": recon / n, "test_kl": kl / n}

    def sample(self, n: int | None = None) -> torch.Tensor:
        """Decoded prior samples in [0, 1]; the fixed batch when n is None."""
        with evaluating(self.model) as model:
            return model.decode(self.fixed_z if n is None else self.latents(n))

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        with evaluating(self.model) as model:
            return model.decode(model.encode(images.to(self.device))[0])

    def interpolate(self, image_a: torch.Tensor, image_b: torch.Tensor, steps: int = 10) -> torch.Tensor:
        """Decoded straight line between the posterior means of two images."""
        with evaluating(self.model) as model:
            mu, _ = model.encode(torch.stack([image_a, image_b]).to(self.device))
            return model.decode(interpolate_latents(mu[0], mu[1], steps))

    def state_dict(self) -> dict:
        return {"config": self.config.to_dict(), "model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "step": self.step, "fixed_z": self.fixed_z, "rng": capture_rng(self.device, self.sample_rng)}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.step = state["step"]
        self.fixed_z = state["fixed_z"].to(self.device)
        restore_rng(state["rng"], self.device, self.sample_rng)
