"""Run configurations for the two trainers, validated, with per-loss defaults filled in.

A config is plain data: the tuner builds one from a Ray/Optuna dict (`from_dict`), the CLI
from its flags. Fields left as None take the defaults of the loss's registry entry (the
literature's for that loss). A loss's own hyperparameters (clip_value, gp_lambda, real_label, or
those of a loss registered later) are declared by its entry in models.losses.LOSSES; they live in
`loss_params` and appear as top-level keys in `from_dict` / `to_dict`, like every other field.
"""

import typing
from dataclasses import asdict, dataclass, field, fields

from models.errors import (UserInputError, require_choice, require_non_negative, require_positive, require_seed,
                           require_type)
from models.losses import LOSSES, specific_params
from models.nets import ARCHS, D_NORMS

OPTIMIZERS = ("adam", "rmsprop")
LR_DECAYS = ("none", "linear")  # linear: to 0 over the configured epochs, every step, both optimizers


def require_known(values: dict, known) -> None:
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UserInputError(f"config: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def scalar_kind(annotation) -> type | None:
    """The scalar type a field holds (`float | None` -> float); None for containers."""
    kinds = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    return kinds[0] if kinds[0] in (bool, int, float, str) else None


def typed_fields(config, label=str) -> dict:
    """Every scalar field of a dataclass as its declared type (`require_type`; the error names
    `label(field)`); None only where the field allows it."""
    typed = {}
    for f in fields(config):
        kind, value = scalar_kind(f.type), getattr(config, f.name)
        if kind is not None and not (value is None and type(None) in typing.get_args(f.type)):
            typed[f.name] = require_type(label(f.name), value, kind)
    return typed


def check_types(config) -> None:
    """`typed_fields`, written back into a (mutable) config."""
    for name, value in typed_fields(config).items():
        setattr(config, name, value)


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
    loss_params: dict = field(default_factory=dict)  # the loss's own fields; missing ones take its defaults
    d_norm: str = "none"  # discriminator normalisation, one of models.nets.D_NORMS
    ema_decay: float = 0.0  # EMA of G's weights and BatchNorm statistics; 0 = off
    ema_start: float = 0.0  # epochs of training before the EMA starts averaging; until then it equals G
    lr_decay: str = "none"
    width: int = 64
    batch_size: int = 64
    epochs: int = 10
    seed: int = 0

    def __post_init__(self):
        check_types(self)
        require_seed("seed", self.seed)
        require_choice("loss", self.loss, LOSSES)
        require_choice("arch", self.arch, ARCHS)
        require_choice("d_norm", self.d_norm, D_NORMS)
        require_choice("lr_decay", self.lr_decay, LR_DECAYS)
        entry = LOSSES[self.loss]
        if self.d_norm in entry.excluded_d_norms:
            allowed = ", ".join(n for n in D_NORMS if n not in entry.excluded_d_norms)
            raise UserInputError(f"d_norm: {self.d_norm!r} cannot train with loss {self.loss!r} "
                                 f"({entry.why_excluded}); use d_norm {allowed}")
        defaults = entry.defaults
        self.lr_g = defaults["lr"] if self.lr_g is None else self.lr_g
        self.lr_d = self.lr_g if self.lr_d is None else self.lr_d
        self.beta1 = defaults["betas"][0] if self.beta1 is None else self.beta1
        self.beta2 = defaults["betas"][1] if self.beta2 is None else self.beta2
        self.optimizer = self.optimizer or defaults["optimizer"]
        self.n_critic = defaults["n_critic"] if self.n_critic is None else self.n_critic
        require_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("z_dim", "lr_g", "lr_d", "n_critic", "width", "batch_size", "epochs"):
            require_positive(name, getattr(self, name))
        for name in ("beta1", "beta2", "ema_decay"):
            if not 0 <= getattr(self, name) < 1:
                raise UserInputError(f"{name}: must be in [0, 1), got {getattr(self, name)!r}")
        require_non_negative("ema_start", self.ema_start)
        self.loss_params = self._checked_loss_params()

    def _checked_loss_params(self) -> dict:
        specific = LOSSES[self.loss].specific
        for name in self.loss_params:
            if name not in specific:
                users = [e.name for e in LOSSES.values() if name in e.specific] or ["no registered loss"]
                raise UserInputError(f"{name}: applies to loss {' or '.join(users)} only, not {self.loss!r}")
        values = {name: require_type(name, self.loss_params.get(name, param.default), float)
                  for name, param in specific.items()}
        for name, value in values.items():
            low, high = specific[name].low, specific[name].high
            if not low < value <= high:
                raise UserInputError(f"{name}: must be in ({low:g}, {high:g}], got {value!r}")
        return values

    @classmethod
    def keys(cls) -> set[str]:
        """The keys of the flat dict form: the fields, and every registered loss's own fields."""
        return ({f.name for f in fields(cls)} - {"loss_params"}) | specific_params().keys()

    @classmethod
    def from_dict(cls, values: dict) -> "GANConfig":
        """From a flat dict (a trial's config, config.json): loss-specific fields at the top level."""
        require_known(values, cls.keys())
        specific = specific_params()
        params = {k: v for k, v in values.items() if k in specific}
        return cls(**{k: v for k, v in values.items() if k not in specific}, loss_params=params)

    def to_dict(self) -> dict:
        """Flat: the loss's own fields as top-level keys, as `from_dict` reads them."""
        values = asdict(self)
        params = values.pop("loss_params")
        return {**values, **params}


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
        check_types(self)
        require_seed("seed", self.seed)
        for name in ("latent_dim", "lr", "width", "batch_size", "epochs"):
            require_positive(name, getattr(self, name))
        require_non_negative("beta", self.beta)
        if not 0 <= self.dropout < 1:
            raise UserInputError(f"dropout: must be in [0, 1), got {self.dropout!r}")

    @classmethod
    def keys(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    @classmethod
    def from_dict(cls, values: dict) -> "VAEConfig":
        require_known(values, cls.keys())
        return cls(**values)

    to_dict = asdict
