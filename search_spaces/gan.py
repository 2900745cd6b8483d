"""GAN search spaces: Optuna define-by-run functions, passed to Ray's OptunaSearch.

Each suggests parameters on an `optuna.Trial` and returns the constants of the config. The
losses, the architectures and each loss's own fields with their ranges come from the registries
(models.losses.LOSSES, models.nets.ARCHS). A conditional parameter is only suggested, and so only
appears in the trial's config, when it applies: a loss's own fields with that loss, beta1/beta2
with Adam (wgan trains with RMSprop), ema_start with the EMA on.

Optuna cannot offer one parameter different choices in different trials, so a loss that excludes
some discriminator normalisations (wgan-gp: batch norm breaks its per-sample penalty) does not
search d_norm at all and trains with the default, none.
"""

from models.config import LR_DECAYS
from models.losses import LOSSES
from models.nets import ARCHS, D_NORMS

# Centred on what trains fastest at the labs' budgets: hinge DCGANs (width 32) after 10 epochs of
# 10k Fashion-MNIST images reach FID 294 at lr 2e-4, 102 at 1e-3, 130 at 2e-3 and 123 at 4e-3.
# The range used to end at 1e-3, so its best region sat on the edge and half of it was below 1e-4.
LR_RANGE = (5e-5, 5e-3)
EMA_DECAYS = [0.0, 0.99, 0.999, 0.9999]
EMA_STARTS = [0.0, 0.5, 1.0, 2.0]  # epochs before the EMA starts averaging


def suggest_loss_specific(trial, loss: str) -> None:
    """The loss's own fields, over the ranges its registry entry declares."""
    for name, param in LOSSES[loss].specific.items():
        if param.choices is not None:
            trial.suggest_categorical(name, list(param.choices))
        else:
            trial.suggest_float(name, *param.search_range, log=True)


def gan_space(trial) -> dict:
    """The full GAN space, with the quality levers: width, D normalisation, EMA of G, beta2, lr decay."""
    loss = trial.suggest_categorical("loss", list(LOSSES))
    entry = LOSSES[loss]
    trial.suggest_categorical("arch", list(ARCHS))
    trial.suggest_categorical("z_dim", [32, 64, 128])
    trial.suggest_categorical("width", [32, 64, 128])
    trial.suggest_float("lr_g", *LR_RANGE, log=True)
    trial.suggest_float("lr_d", *LR_RANGE, log=True)
    trial.suggest_int("n_critic", 1, 5)
    suggest_loss_specific(trial, loss)
    if entry.defaults["optimizer"] == "adam":  # RMSprop has no betas
        trial.suggest_float("beta1", 0.0, 0.9)
        trial.suggest_categorical("beta2", [0.9, 0.999])
    trial.suggest_categorical("batch_size", [32, 64, 128])
    if not entry.excluded_d_norms:
        trial.suggest_categorical("d_norm", list(D_NORMS))
    if trial.suggest_categorical("ema_decay", EMA_DECAYS) > 0:
        trial.suggest_categorical("ema_start", EMA_STARTS)
    trial.suggest_categorical("lr_decay", list(LR_DECAYS))
    return {"model": "gan"}


def demo_gan_space(trial) -> dict:
    """The region where width-32 DCGANs learn fastest, for `make tune`'s few-minute search on CPU:
    hinge at lr 1e-3 and batch 32 reaches FID 112 after five epochs of 10k Fashion-MNIST images
    (54 after eight epochs of 20k), while the corners of these ranges (lr 2e-4 or 4e-3, two D steps) are slow or unstable, which
    gives ASHA and the collapse stopper something to stop."""
    trial.suggest_categorical("loss", ["hinge", "bce"])
    trial.suggest_categorical("z_dim", [32, 64])
    trial.suggest_float("lr_g", 2e-4, 4e-3, log=True)
    trial.suggest_float("lr_d", 2e-4, 4e-3, log=True)
    trial.suggest_int("n_critic", 1, 2)
    return {"model": "gan", "arch": "dcgan", "width": 32, "batch_size": 32}


def smoke_gan_space(trial) -> dict:
    """A small corner of the GAN space with narrow nets, for a run of about a minute on CPU."""
    loss = trial.suggest_categorical("loss", list(LOSSES))
    trial.suggest_categorical("z_dim", [32, 64])
    trial.suggest_float("lr_g", 5e-5, 1e-3, log=True)
    suggest_loss_specific(trial, loss)
    return {"model": "gan", "arch": "dcgan", "width": 16, "batch_size": 64}
