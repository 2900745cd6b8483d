"""GAN trainer, independent of Ray: plain loop, metrics as a dict, exact resume.

One training step = one discriminator (critic) step on a fresh real batch; every
`n_critic`-th step is followed by one generator step. Losses are summed on the device and
read back once per call, so the hot loop never waits on a host sync. Gradient norms cost a
pass over every parameter, so they are sampled every GRAD_NORM_EVERY steps, not every step.

The loss (its D and G losses, penalty, weight clipping, score) comes from its registry entry.
With `ema_decay` > 0 an exponential moving average of G (weights and BatchNorm statistics)
is kept after every G step; `generator` (what `sample` and evaluation use) is then that EMA.
Samples for evaluation draw from their own noise stream, so evaluating never changes training.
"""

import copy
import math
import time

import torch
from tqdm.auto import tqdm

from models.config import GANConfig
from models.data import Dataset, DeviceBatches, to_gan_range
from models.losses import LOSSES
from models.nets import build_gan, evaluating
from models.rng import capture_rng, restore_rng

FIXED_NOISE = 64  # samples in the fixed-noise grid saved each epoch
SAMPLE_SEED_OFFSET = 1_000_003  # sample(n)'s noise stream: seed + this, apart from training's
DIVERGENCE_CHECK_EVERY = 100  # steps between (syncing) checks for non-finite losses
GRAD_NORM_EVERY = 10  # D (and G) steps between gradient-norm samples, from each call's first step
EMA_WARMUP = 10  # the decay's warm-up, as TensorFlow's ExponentialMovingAverage(num_updates=...)


def ema_decay_at(decay: float, updates: int) -> float:
    """The EMA decay after `updates` averaging steps: min(decay, (1 + n) / (EMA_WARMUP + n)). A fixed
    0.999 from the first step would keep about 40% of the random initial weights after 1,000 steps,
    and a young EMA generator would be scored (and stopped by ASHA) for its initialisation."""
    return min(decay, (1 + updates) / (EMA_WARMUP + updates))


def total_grad_norm(module: torch.nn.Module) -> torch.Tensor:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads)


def make_optimizer(name: str, params, lr: float, betas: tuple):
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)  # fused kernels exist for CPU and CUDA


class GANTrainer:
    def __init__(self, config: GANConfig, data: Dataset, device: str | torch.device = "cpu"):
        self.config = c = config
        self.device = torch.device(device)
        torch.manual_seed(c.seed)  # weight init and WGAN-GP's interpolation weights
        # channels_last runs oneDNN's convolutions about 12% faster on CPU (bench/throughput.py)
        conv_on_cpu = self.device.type == "cpu" and c.arch == "dcgan"
        layout = torch.channels_last if conv_on_cpu else torch.contiguous_format
        images = data.images.to(self.device)
        images = to_gan_range(images).contiguous(memory_format=layout) if data.is_image else images
        self.batches = DeviceBatches(images, c.batch_size, c.seed)
        self.loss = LOSSES[c.loss]
        self.G, self.D = build_gan(c.arch, c.z_dim, data.shape, c.width, c.d_norm)
        self.G.to(self.device, memory_format=layout)
        self.D.to(self.device, memory_format=layout)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval() if c.ema_decay > 0 else None
        betas = (c.beta1, c.beta2)
        self.opt_g = make_optimizer(c.optimizer, self.G.parameters(), c.lr_g, betas)
        self.opt_d = make_optimizer(c.optimizer, self.D.parameters(), c.lr_d, betas)
        self.noise_rng = torch.Generator(device=self.device).manual_seed(c.seed)
        self.sample_rng = torch.Generator(device=self.device).manual_seed(c.seed + SAMPLE_SEED_OFFSET)
        self.fixed_noise = self.noise(FIXED_NOISE)
        self.step = 0  # discriminator steps = real batches consumed
        self.g_steps = 0
        self.ema_updates = 0  # averaging steps of G_ema so far (its decay warms up over them)
        self.total_steps = c.epochs * len(self.batches)

    @property
    def epoch(self) -> float:
        return self.step / len(self.batches)

    @property
    def generator(self) -> torch.nn.Module:
        """The network to sample and evaluate: the EMA of G when it is on, else G."""
        return self.G if self.G_ema is None else self.G_ema

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        generator = self.noise_rng if generator is None else generator
        return torch.randn(n, self.config.z_dim, device=self.device, generator=generator)

    def set_learning_rates(self) -> None:
        """Linear decay: both learning rates fall from their configured values at step 0 to 0
        after the last step of the configured epochs."""
        factor = max(0.0, 1 - self.step / self.total_steps)
        for opt, lr in ((self.opt_d, self.config.lr_d), (self.opt_g, self.config.lr_g)):
            for group in opt.param_groups:
                group["lr"] = lr * factor

    @torch.no_grad()
    def update_ema(self) -> None:
        """Average G's weights and float buffers (BatchNorm statistics) into G_ema; before
        `ema_start` epochs G_ema copies G, so the average starts from trained weights. The decay
        warms up (`ema_decay_at`), so the average never carries the untrained initial weights."""
        averaging = self.epoch >= self.config.ema_start
        weight = 1 - ema_decay_at(self.config.ema_decay, self.ema_updates)
        for ema, live in zip(self.G_ema.state_dict().values(), self.G.state_dict().values()):
            if averaging and ema.is_floating_point():
                ema.lerp_(live, weight)
            else:
                ema.copy_(live)
        self.ema_updates += averaging

    def train_epoch(self, progress: bool = False) -> dict:
        """Train to the end of the current epoch (a whole one when starting at its beginning)."""
        return self.train_steps(len(self.batches) - self.step % len(self.batches), progress)

    def train_steps(self, num_steps: int, progress: bool = False) -> dict:
        c = self.config
        self.G.train()
        self.D.train()
        d_sums = torch.zeros(3, device=self.device)  # d_loss, d_real, d_fake
        g_sums = torch.zeros(1, device=self.device)  # g_loss
        norm_sums = torch.zeros(2, device=self.device)  # d_grad, g_grad at sampled steps
        d_count = g_count = d_norms = g_norms = 0
        loss = self.loss
        diverged = False
        started = time.perf_counter()
        bar = tqdm(range(num_steps), desc=f"epoch {int(self.epoch) + 1}", disable=not progress, leave=False)
        for i in bar:
            # 1. discriminator / critic step on a fresh real batch
            real = self.batches.batch(self.step)
            with torch.no_grad():
                fake = self.G(self.noise(len(real)))
            real_logits, fake_logits = self.D(real), self.D(fake)
            d_loss = loss.d_loss(real_logits, fake_logits, c.loss_params)
            if loss.penalty:
                d_loss = d_loss + loss.penalty(self.D, real, fake, c.loss_params)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            if i % GRAD_NORM_EVERY == 0:
                norm_sums[0] += total_grad_norm(self.D)
                d_norms += 1
            self.opt_d.step()
            if loss.after_d_step:
                loss.after_d_step(self.D, c.loss_params)
            self.step += 1
            d_count += 1
            with torch.no_grad():
                d_sums += torch.stack([d_loss, loss.score(real_logits).mean(), loss.score(fake_logits).mean()])

            # 2. generator step every n_critic discriminator steps
            if self.step % c.n_critic == 0:
                self.D.requires_grad_(False)  # only G's gradients are needed: skip D's weight gradients
                g_loss = loss.g_loss(self.D(self.G(self.noise(c.batch_size))))
                self.opt_g.zero_grad(set_to_none=True)
                g_loss.backward()
                self.D.requires_grad_(True)
                if g_count % GRAD_NORM_EVERY == 0:
                    norm_sums[1] += total_grad_norm(self.G)
                    g_norms += 1
                self.opt_g.step()
                if self.G_ema is not None:
                    self.update_ema()
                self.g_steps += 1
                g_count += 1
                g_sums += g_loss.detach()

            # 3. learning rates for the next step
            if c.lr_decay == "linear":
                self.set_learning_rates()

            if (i + 1) % DIVERGENCE_CHECK_EVERY == 0 and not torch.isfinite(d_sums.sum() + g_sums).item():
                diverged = True
                break
        # the one host sync of this call
        d_loss_sum, d_real_sum, d_fake_sum, g_loss_sum, d_norm_sum, g_norm_sum = (
            torch.cat([d_sums, g_sums, norm_sums]).tolist())
        seconds = time.perf_counter() - started
        g_den, g_norm_den = max(g_count, 1), max(g_norms, 1)  # a call shorter than n_critic reports G as 0
        metrics = {
            "d_loss": d_loss_sum / d_count, "g_loss": g_loss_sum / g_den,
            "d_real": d_real_sum / d_count, "d_fake": d_fake_sum / d_count,
            "d_grad_norm": d_norm_sum / d_norms, "g_grad_norm": g_norm_sum / g_norm_den,
            "images_per_s": d_count * c.batch_size / seconds, "train_seconds": seconds,
            "epoch": self.epoch, "step": self.step, "g_steps": self.g_steps,
        }
        losses_finite = all(map(math.isfinite, (d_loss_sum, d_real_sum, d_fake_sum, g_loss_sum)))
        metrics["diverged"] = diverged or not losses_finite
        return metrics

    def sample(self, n: int | None = None) -> torch.Tensor:
        """`generator`'s output in the data's range; the fixed-noise batch when n is None."""
        with evaluating(self.generator) as G:
            return G(self.fixed_noise if n is None else self.noise(n, self.sample_rng))

    def state_dict(self) -> dict:
        return {
            "config": self.config.to_dict(), "G": self.G.state_dict(), "D": self.D.state_dict(),
            "G_ema": None if self.G_ema is None else self.G_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "step": self.step, "g_steps": self.g_steps, "ema_updates": self.ema_updates,
            "fixed_noise": self.fixed_noise,
            "rng": capture_rng(self.device, self.noise_rng, self.sample_rng),
        }

    def load_state_dict(self, state: dict) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        if self.G_ema is not None:
            self.G_ema.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step, self.g_steps = state["step"], state["g_steps"]
        self.ema_updates = state.get("ema_updates", self.g_steps)  # older checkpoints: past any warm-up, as they ran
        self.fixed_noise = state["fixed_noise"].to(self.device)
        restore_rng(state["rng"], self.device, self.noise_rng, self.sample_rng)

