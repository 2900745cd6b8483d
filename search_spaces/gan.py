"""GAN search spaces: Optuna define-by-run functions, passed to Ray's OptunaSearch.

Each suggests parameters on an `optuna.Trial` and returns the constants of the config. A
conditional parameter (clip value for wgan, gradient-penalty weight for wgan-gp, label smoothing
for bce) is only suggested, and so only appears in the trial's config, when its loss is chosen.
"""

LOSSES = ["bce", "hinge", "wgan", "wgan-gp"]
# Centred on what trains fastest at the labs' budgets: hinge DCGANs (width 32) after 10 epochs of
# 10k Fashion-MNIST images reach FID 294 at lr 2e-4, 102 at 1e-3, 130 at 2e-3 and 123 at 4e-3.
# The range used to end at 1e-3, so its best region sat on the edge and half of it was below 1e-4.
LR_RANGE = (5e-5, 5e-3)


def suggest_loss_specific(trial, loss: str) -> None:
    if loss == "wgan":
        trial.suggest_float("clip_value", 0.005, 0.1, log=True)
    elif loss == "wgan-gp":
        trial.suggest_float("gp_lambda", 1.0, 20.0, log=True)
    elif loss == "bce":
        trial.suggest_categorical("real_label", [1.0, 0.9])


def gan_space(trial) -> dict:
    """The full GAN space."""
    loss = trial.suggest_categorical("loss", LOSSES)
    trial.suggest_categorical("arch", ["dcgan", "mlp"])
    trial.suggest_categorical("z_dim", [32, 64, 128])
    trial.suggest_float("lr_g", *LR_RANGE, log=True)
    trial.suggest_float("lr_d", *LR_RANGE, log=True)
    trial.suggest_int("n_critic", 1, 5)
    suggest_loss_specific(trial, loss)
    if loss != "wgan":  # wgan trains with RMSprop, which has no beta1
        trial.suggest_float("beta1", 0.0, 0.9)
    trial.suggest_categorical("batch_size", [32, 64, 128])
    trial.suggest_categorical("spectral_norm", [False, True])
    return {"model": "gan"}


def smoke_gan_space(trial) -> dict:
    """A small corner of the GAN space with narrow nets, for a run of about a minute on CPU."""
    loss = trial.suggest_categorical("loss", LOSSES)
    trial.suggest_categorical("z_dim", [32, 64])
    trial.suggest_float("lr_g", 5e-5, 1e-3, log=True)
    suggest_loss_specific(trial, loss)
    return {"model": "gan", "arch": "dcgan", "width": 16, "batch_size": 64}
