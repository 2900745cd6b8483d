"""Known recipes a search can start from (`--start-from NAME`, SearchSpec.start_from).

TPE evaluates each start point first (Optuna's enqueue_trial), then samples the space as usual, so
a search begins from what is already known to work instead of from random draws, and TPE's model
of the good region starts with that point in it. A start point sets the values its space
searches; a value the space does not search is ignored (pin it with --fixed). A built-in model's
point is completed with its config's defaults before it is queued, so "hinge, z_dim 32" means the
labs' whole recipe, not those two values with the rest drawn at random.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    config: dict
    source: str  # where the values come from, shown by --help


RECIPES = {
    "labs-hinge": Recipe(
        {"model": "gan", "loss": "hinge", "z_dim": 32},
        "the labs' best grid point: hinge loss, z_dim 32, their DCGAN defaults (Adam 2e-4, betas (0.5, 0.999), "
        "batch 64)"),
    "fast-hinge": Recipe(
        {"model": "gan", "loss": "hinge", "z_dim": 32, "lr_g": 1e-3, "lr_d": 1e-3, "n_critic": 1, "width": 32,
         "batch_size": 32},
        "hinge loss at lr 1e-3, batch 32, width 32: healthy with FID 112 after 5 epochs of 10k Fashion-MNIST "
        "images, where the labs' lr 2e-4 is still at FID 300 (the demo preset starts here)"),
    "fast-hinge-ema": Recipe(
        {"model": "gan", "loss": "hinge", "z_dim": 32, "lr_g": 1e-3, "lr_d": 1e-3, "n_critic": 1, "width": 32,
         "batch_size": 32, "ema_decay": 0.999, "ema_start": 1.0},
        "fast-hinge with an EMA of G at 0.999 from the second epoch, to smooth the epoch-to-epoch swings of "
        "its high learning rate"),
    "searched-sn-hinge": Recipe(
        {"model": "gan", "loss": "hinge", "z_dim": 64, "lr_g": 1.35e-3, "lr_d": 3.5e-4, "beta1": 0.1, "beta2": 0.9,
         "n_critic": 1, "batch_size": 32, "d_norm": "spectral", "ema_decay": 0.999, "ema_start": 0.0},
        "the winner of gantune's first full-scale search (bench/quality.py, seed 0; values rounded): hinge, "
        "spectral norm in D, lr_g 1.35e-3 with lr_d 3.5e-4, Adam betas (0.1, 0.9), batch 32, EMA of G at 0.999; "
        "retrained for 5 epochs at width 64 on all of Fashion-MNIST it reached FID 33.2"),
    "sngan-ema": Recipe(
        {"model": "gan", "loss": "hinge", "z_dim": 128, "d_norm": "spectral", "lr_g": 2e-4, "lr_d": 2e-4,
         "beta1": 0.5, "beta2": 0.999, "n_critic": 1, "batch_size": 64, "ema_decay": 0.999, "ema_start": 0.0},
        "SN-GAN's standard-CNN recipe (Miyato et al. 2018, setting C: hinge loss, spectral norm in D, Adam 2e-4, "
        "betas (0.5, 0.999), one D step per G step, z_dim 128) with an EMA of G at 0.999 (Yazici et al. 2019)"),
}
