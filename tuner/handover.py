"""The winner handed over: each trial's best generator by objective, in a small file of its own.

The trainable keeps one `BestGenerator` per trial. After every evaluation it offers the trainer;
when the report's objective is strictly better than the best so far (lower is better; collapsed
evaluations carry the collapse penalty, so they lose to healthy ones), the tracker copies the
generator's weights (the EMA generator when EMA is on) to CPU, with what is needed to rebuild and
sample it. The trainable writes BEST_GENERATOR into every checkpoint, so the trial's latest
checkpoint, which Ray always keeps, holds the best-so-far weights however many older checkpoints
were pruned; the tracker's `state()` rides in the trainer state, so `--resume` restores it.

    from tuner.handover import load_generator, sample
    generator, config, meta = load_generator("runs/my-search")  # the trial tuner.analysis ranks first
    images = sample(generator, meta, 64, seed=0)                 # (64, C, H, W) in [0, 1]

Built-in GANs and VAEs (whose decoder is the generator) are handed over. Plug-in trainers
(`--trainer pkg.mod:factory`) keep nothing: without the plug-in's own network builder a file of
weights could not be turned back into a network, so `update` returns False for them.
"""

import json
import math
from pathlib import Path

import torch
from torch import nn

from models.errors import UserInputError
from tuner.trainers import TRAINERS

BEST_GENERATOR = "best_generator.pt"
SAMPLE_CHUNK = 1000  # latent codes per forward pass when sampling many images


class VAEDecoder(nn.Module):
    """A VAE's decoder as a generator: latent codes to images in [0, 1]."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, z):
        return self.vae.decode(z)


def _plain(config: dict) -> dict:
    """The config as JSON types (numpy scalars as numbers), so the file loads with weights_only."""
    return json.loads(json.dumps(config, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def _network_and_meta(trainer, model: str) -> tuple[nn.Module, dict] | None:
    """(the network to hand over, how to rebuild and sample it) for the built-in trainers; None for
    plug-ins, even one that subclasses a built-in trainer (its networks may be its own)."""
    if model not in TRAINERS:
        return None
    data_shape = list(trainer.batches.data.shape[1:])
    if model == "vae":
        return VAEDecoder(trainer.model), {"model": "vae", "z_dim": trainer.config.latent_dim, "data_shape": data_shape,
                                           "output_range": [0.0, 1.0], "value_range": [0.0, 1.0]}
    image_range = [0.0, 1.0] if len(data_shape) == 3 else None  # the 2-D toy sets are points, not images
    return trainer.generator, {"model": "gan", "z_dim": trainer.config.z_dim, "data_shape": data_shape,
                               "output_range": [-1.0, 1.0] if image_range else None, "value_range": image_range}


class BestGenerator:
    """The best generator of one trial so far, kept in memory as CPU tensors."""

    def __init__(self, weights: dict | None = None, meta: dict | None = None):
        self.weights, self.meta = weights, meta

    @property
    def objective(self) -> float:
        return self.meta["objective"] if self.meta else math.inf

    def update(self, trainer, config: dict, objective: float, epoch: float) -> bool:
        """Keep the trainer's generator if `objective` beats the best so far; True when it was kept.
        A NaN objective never wins; plug-in trainers are never kept (see the module docstring)."""
        if not objective < self.objective:
            return False
        found = _network_and_meta(trainer, config.get("model"))
        if found is None:
            return False
        network, meta = found
        self.weights = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in network.state_dict().items()}
        self.meta = {**meta, "config": _plain(config), "trainer_config": _plain(trainer.config.to_dict()),
                     "epoch": float(epoch), "objective": float(objective)}
        return True

    def state(self) -> dict | None:
        """What the trainable stores in its checkpoint state; None before the first kept generator."""
        return {"weights": self.weights, "meta": self.meta} if self.meta else None

    @classmethod
    def from_state(cls, state: dict | None) -> "BestGenerator":
        return cls(state["weights"], state["meta"]) if state else cls()

    def write(self, directory) -> Path | None:
        """Write BEST_GENERATOR into `directory` (a checkpoint being built); None when nothing is kept."""
        if not self.meta:
            return None
        path = Path(directory) / BEST_GENERATOR
        torch.save(self.state(), path)
        return path


def build_network(meta: dict) -> nn.Module:
    """An untrained generator of the architecture the file's weights belong to."""
    from models.config import GANConfig, VAEConfig
    from models.nets import build_gan
    from models.vae import ConvVAE

    shape = tuple(meta["data_shape"])
    if meta["model"] == "vae":
        c = VAEConfig.from_dict(meta["trainer_config"])
        return VAEDecoder(ConvVAE(c.latent_dim, shape[0], shape[1], c.width, c.regularized, c.dropout))
    c = GANConfig.from_dict(meta["trainer_config"])
    return build_gan(c.arch, c.z_dim, shape, c.width, c.d_norm)[0]


def read_generator(path) -> tuple[nn.Module, dict]:
    """(generator in eval mode on CPU, meta) from a BEST_GENERATOR file."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    generator = build_network(saved["meta"])
    generator.load_state_dict(saved["weights"])
    return generator.eval(), saved["meta"]


def best_generator_file(trial_path) -> Path | None:
    """The trial's BEST_GENERATOR, from its latest checkpoint (the one that always holds the best so far)."""
    from tuner.analysis.frames import latest_checkpoint

    checkpoint = latest_checkpoint(trial_path)
    path = checkpoint / BEST_GENERATOR if checkpoint else None
    return path if path and path.is_file() else None


def load_generator(experiment_dir, trial_id: str | None = None) -> tuple[nn.Module, dict, dict]:
    """(generator in eval mode on CPU, the trial's config, meta) of the trial `tuner.analysis` ranks
    first (healthy trials first, then by best FID), or of `trial_id`. meta holds z_dim, data_shape,
    output_range (the network's), value_range (what `sample` returns), the epoch and objective of
    the kept evaluation, and the trial's id, rank, health and file path."""
    from tuner.analysis.frames import load_trials

    trials = load_trials(experiment_dir)
    if trials.empty:
        raise UserInputError(f"experiment_dir: {experiment_dir} has no trials yet")
    if trial_id is None:
        row = trials.iloc[0]
    else:
        match = trials[trials["trial_id"] == trial_id]
        if match.empty:
            raise UserInputError(f"trial: {trial_id!r} is not a trial of {experiment_dir}; its trials are "
                                 f"{', '.join(trials['trial_id'])}")
        row = match.iloc[0]
    path = best_generator_file(row["path"])
    if path is None:
        raise UserInputError(f"trial: {row['trial_id']} has no {BEST_GENERATOR} in its latest checkpoint (it has "
                             "not been evaluated yet, or its trainer is a plug-in, which keeps none)")
    generator, meta = read_generator(path)
    meta = {**meta, "trial_id": row["trial_id"], "rank": int(row["rank"]), "health": row["health"],
            "path": str(path)}
    return generator, meta["config"], meta


def sample(generator: nn.Module, meta: dict, n: int, seed: int = 0) -> torch.Tensor:
    """n samples on CPU, images mapped to [0, 1] (meta's value_range); the same seed, the same samples."""
    from models.data import from_gan_range

    z = torch.randn(n, meta["z_dim"], generator=torch.Generator().manual_seed(seed))
    device = next(generator.parameters()).device
    with torch.no_grad():
        out = torch.cat([generator(part.to(device)).cpu() for part in z.split(SAMPLE_CHUNK)])
    return from_gan_range(out) if meta["output_range"] == [-1.0, 1.0] else out
