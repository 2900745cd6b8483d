"""Trainer factories: what a trial trains. The built-in GAN and VAE, or your own model.

A factory is called once per trial as `factory(config, data, device)`: `config` is the trial's
config dict (its hyperparameters plus "model", "dataset", "epochs" and "seed"), `data` the
training `models.data.Dataset` (images float32 in [0, 1], N x C x H x W, in `data.images`) and
`device` a torch.device. It returns a trainer with this protocol:

    train_epoch() -> dict   train to the end of the current epoch; metrics of that stretch. Must
                            hold "epoch" (float); may hold "diverged" (bool: non-finite losses),
                            "d_loss", "g_loss" (the collapse detector reads their recent history)
                            and any other numbers, which are reported as they are.
    sample(n=None)          n generated images in [0, 1], shaped like the data, on any device;
                            with n None, the same fixed batch every call (the per-epoch grid).
    state_dict() / load_state_dict(state)   everything needed to resume exactly (checkpoints): tensors,
                                            numbers, strings, bytes and plain containers of them, since
                                            checkpoints load with torch.load(weights_only=True).
    epoch                   float: epochs trained so far (the trial stops at config["epochs"]).

Optional: `train_steps(n)` (train n steps, never past config["epochs"]; needed only for
--steps-per-report) and `save_images(directory)` (extra PNGs for each checkpoint). Only the
built-in trainers keep their best generator for tuner.handover: a plug-in's weights could not be
turned back into a network without its own builder.

A trial config's "model" names its factory: a key of TRAINERS or "package.module:factory".
"""

import importlib

from models.config import GANConfig, VAEConfig
from models.data import from_gan_range
from models.errors import UserInputError
from models.gan_trainer import GANTrainer
from models.grids import save_vae_grids
from models.vae_trainer import VAETrainer
from tuner.objective import hyperparameters

VAE_GRID_IMAGES = 24  # training images behind the VAE reconstruction and interpolation grids


def capped_steps(trainer, num_steps: int, epochs: float) -> int:
    """`num_steps`, or fewer so that the trainer stops at the end of its last epoch."""
    return min(num_steps, round((epochs - trainer.epoch) * len(trainer.batches)))


class BuiltinGAN(GANTrainer):
    """GANTrainer under the protocol: its generator draws images in [-1, 1], the protocol's are in [0, 1];
    points of the 2-D toy sets stay in the data's coordinates, as the generator draws them."""

    def train_steps(self, num_steps: int, progress: bool = False) -> dict:
        return super().train_steps(capped_steps(self, num_steps, self.config.epochs), progress)

    def sample(self, n: int | None = None):
        samples = super().sample(n)
        return from_gan_range(samples) if samples.dim() == 4 else samples


class BuiltinVAE(VAETrainer):
    """VAETrainer under the protocol, plus reconstruction and interpolation grids in each checkpoint."""

    def __init__(self, config: VAEConfig, data, device):
        super().__init__(config, data, device)
        self.grid_images = data.images[:VAE_GRID_IMAGES].to(self.device)

    def train_steps(self, num_steps: int, progress: bool = False) -> dict:
        return super().train_steps(capped_steps(self, num_steps, self.config.epochs), progress)

    def save_images(self, directory) -> None:
        save_vae_grids(self, self.grid_images, directory, tag="train")


def builtin_config(config: dict) -> dict:
    """The fields of a built-in trainer's config: the hyperparameters plus the run's epochs and seed."""
    return {**hyperparameters(config), "epochs": config["epochs"], "seed": config["seed"]}


def gan(config: dict, data, device) -> BuiltinGAN:
    return BuiltinGAN(GANConfig.from_dict(builtin_config(config)), data, device)


def vae(config: dict, data, device) -> BuiltinVAE:
    return BuiltinVAE(VAEConfig.from_dict(builtin_config(config)), data, device)


TRAINERS = {"gan": gan, "vae": vae}


def load_reference(field: str, reference: str):
    """The object "package.module:name" names, or one UserInputError naming `field`."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise UserInputError(f"{field}: {reference!r} is not package.module:name")
    try:
        module = importlib.import_module(module_name)
    except (ImportError, SyntaxError) as err:
        raise UserInputError(f"{field}: cannot import {module_name!r} ({err})") from None
    try:
        found = getattr(module, attribute)
    except AttributeError:
        raise UserInputError(f"{field}: module {module_name!r} has no {attribute!r}") from None
    if not callable(found):
        raise UserInputError(f"{field}: {reference} is a {type(found).__name__}, not a function")
    return found


def trainer_factory(model: str):
    """A trial config's "model": a built-in trainer, or the factory it names."""
    return TRAINERS[model] if model in TRAINERS else load_reference("trainer", model)


def build_trainer(config: dict, data, device):
    return trainer_factory(config["model"])(config, data, device)
