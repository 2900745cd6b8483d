"""Optuna search spaces (pure functions of an `optuna.Trial`) and the seed experiments' grid.

Spaces are module-level functions or `functools.partial`s of them, so that Ray can pickle the
searcher's state for `--resume`.
"""

from functools import partial

from search_spaces.gan import demo_gan_space, gan_space, smoke_gan_space
from search_spaces.grid import seed_grid
from search_spaces.vae import smoke_vae_space, vae_space


def either(gan, vae, trial) -> dict:
    """First pick the model family, then search that family's space."""
    model = trial.suggest_categorical("model", ["gan", "vae"])
    return {**(gan if model == "gan" else vae)(trial), "model": model}


SPACES = {  # (--space, --model) -> define-by-run function; "seed-grid" is a list, see grid.py
    ("full", "gan"): gan_space, ("full", "vae"): vae_space, ("full", "both"): partial(either, gan_space, vae_space),
    ("demo", "gan"): demo_gan_space,
    ("smoke", "gan"): smoke_gan_space, ("smoke", "vae"): smoke_vae_space,
    ("smoke", "both"): partial(either, smoke_gan_space, smoke_vae_space),
}

__all__ = ["SPACES", "demo_gan_space", "either", "gan_space", "seed_grid", "smoke_gan_space", "smoke_vae_space", "vae_space"]
