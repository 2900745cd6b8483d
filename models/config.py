"""Run configurations for the two trainers, validated, with per-loss defaults filled in.

A config is plain data: the tuner builds one from a Ray/Optuna dict (`from_dict`), the CLI
from its flags. Fields left as None take the defaults the literature uses for that loss.
"""

from dataclasses import asdict, dataclass, fields

from models.errors import UserInputError, require_choice, require_non_negative, require_positive
from models.losses import LOSSES
from models.nets import ARCHS

OPTIMIZERS = ("adam", "rmsprop")

# lr, optimizer, (beta1, beta2), n_critic: DCGAN for bce/hinge, the WGAN and WGAN-GP papers for theirs.
LOSS_DEFAULTS = {
    "bce": dict(lr=2e-4, optimizer="adam", betas=(0.5, 0.999), n_critic=1),
    "hinge": dict(lr=2e-4, optimizer="adam", betas=(0.5, 0.999), n_critic=1),
    "wgan": dict(lr=5e-5, optimizer="rmsprop", betas=(0.5, 0.999), n_critic=5),
    "wgan-gp": dict(lr=1e-4, optimizer="adam", betas=(0.5, 0.9), n_critic=5),
}


LOSS_SPECIFIC = {"clip_value": "wgan", "gp_lambda": "wgan-gp", "real_label": "bce"}  # field: the loss it applies to


def _from_dict(cls, values: dict):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserInputError(f"config: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**values)


@dataclass
class GANConfig:
    loss: str = "bce"
    arch: str = "dcgan"
    z_dim: int = 64
    lr_g: float | None = None
    lr_d: float | None = None
    beta1: float | None = None
    beta2: float | None = None
    optimizer: str | None = None
    n_critic: int | None = None
    clip_value: float = 0.01  # wgan only
    gp_lambda: float = 10.0  # wgan-gp only
    real_label: float = 1.0  # bce only; 0.9 is one-sided label smoothing
    spectral_norm: bool = False
    width: int = 64
    batch_size: int = 64
    epochs: int = 10
    seed: int = 0

    def __post_init__(self):
        require_choice("loss", self.loss, LOSSES)
        require_choice("arch", self.arch, ARCHS)
        defaults = LOSS_DEFAULTS[self.loss]
        self.lr_g = defaults["lr"] if self.lr_g is None else self.lr_g
        self.lr_d = self.lr_g if self.lr_d is None else self.lr_d
        self.beta1 = defaults["betas"][0] if self.beta1 is None else self.beta1
        self.beta2 = defaults["betas"][1] if self.beta2 is None else self.beta2
        self.optimizer = self.optimizer or defaults["optimizer"]
        self.n_critic = defaults["n_critic"] if self.n_critic is None else self.n_critic
        require_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("z_dim", "lr_g", "lr_d", "n_critic", "clip_value", "gp_lambda", "width",
                     "batch_size", "epochs"):
            require_positive(name, getattr(self, name))
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise UserInputError(f"{name}: must be in [0, 1), got {getattr(self, name)!r}")
        if not 0 < self.real_label <= 1:
            raise UserInputError(f"real_label: must be in (0, 1], got {self.real_label!r}")

    from_dict = classmethod(_from_dict)
    to_dict = asdict


@dataclass
class VAEConfig:
    latent_dim: int = 16
    lr: float = 1e-3
    beta: float = 1.0  # KL weight; 1 is the plain VAE
    regularized: bool = False  # BatchNorm + dropout
    dropout: float = 0.2
    width: int = 32
    batch_size: int = 128
    epochs: int = 10
    seed: int = 0

    def __post_init__(self):
        for name in ("latent_dim", "lr", "width", "batch_size", "epochs"):
            require_positive(name, getattr(self, name))
        require_non_negative("beta", self.beta)
        if not 0 <= self.dropout < 1:
            raise UserInputError(f"dropout: must be in [0, 1), got {self.dropout!r}")

    from_dict = classmethod(_from_dict)
    to_dict = asdict
