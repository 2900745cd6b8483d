"""Hyperparameter importance per model family and target (tuner/analysis/importance.py): the
collapsed fraction gets its own importances, computed for each model family on its own trials."""

import pandas as pd

from tuner.analysis.importance import TARGETS, all_importances

TRIALS = 16


def family_frame() -> pd.DataFrame:
    """16 GANs and 16 VAEs. GAN: z_dim drives the objective, lr_g the collapsed fraction. VAE: lr
    drives the objective, beta the collapsed fraction. The other parameters cycle without effect."""
    steps = range(TRIALS)
    z_dims = [32, 64, 128, 64] * 4
    gans = pd.DataFrame({
        "model": "gan", "lr_g": [1e-5 * 1.5 ** i for i in steps], "z_dim": z_dims,
        "loss": ["bce", "bce", "hinge", "hinge"] * 4,  # not aligned with z_dim 64
        "best_objective": [{32: 300.0, 64: 100.0, 128: 200.0}[z] for z in z_dims],  # spread over every lr_g
        "collapsed_fraction": [i / (TRIALS - 1) for i in steps]})  # the higher lr_g, the more it collapses
    vaes = pd.DataFrame({
        "model": "vae", "lr": [1e-4 * 1.4 ** i for i in steps], "beta": [0.25 * (1 + (7 * i) % TRIALS) for i in steps],
        "latent_dim": [8, 16, 32, 16] * 4,
        "best_objective": [abs(i - 5) * 10.0 for i in steps]})  # best at one lr
    vaes["collapsed_fraction"] = vaes["beta"].rank(method="first").sub(1) / (TRIALS - 1)  # the higher beta, the more
    return pd.concat([gans, vaes], ignore_index=True)


def test_collapsed_fraction_importance_is_computed_per_model_family():
    assert TARGETS["collapse"] == "collapsed_fraction"
    found, missing = all_importances(family_frame(), ["loss", "z_dim", "lr_g", "lr", "beta", "latent_dim"])
    assert missing == {} and set(found) == {"GAN: objective", "GAN: collapse", "VAE: objective", "VAE: collapse"}
    assert found["GAN: collapse"].idxmax() == "lr_g" and found["GAN: objective"].idxmax() == "z_dim"
    assert found["VAE: collapse"].idxmax() == "beta" and found["VAE: objective"].idxmax() == "lr"
    assert set(found["GAN: collapse"].index) == {"loss", "z_dim", "lr_g"}  # one family's parameters only
    assert set(found["VAE: collapse"].index) == {"lr", "beta", "latent_dim"}
