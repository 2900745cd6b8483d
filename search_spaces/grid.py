"""The seed labs' exact grid, as a list of trial configs for a grid search."""

SEED_GRID_DATASETS = ("mnist", "fashion_mnist")


def seed_grid(datasets=SEED_GRID_DATASETS, models=("gan", "vae"), epochs: int = 10) -> list[dict]:
    """{hinge, bce} x z_dim {32, 64, 128} DCGANs and latent {8, 16, 32} VAEs on each dataset."""
    points = []
    for dataset in datasets:
        if "gan" in models:
            points += [{"model": "gan", "dataset": dataset, "loss": loss, "z_dim": z, "epochs": epochs}
                       for loss in ("hinge", "bce") for z in (32, 64, 128)]
        if "vae" in models:
            points += [{"model": "vae", "dataset": dataset, "latent_dim": d, "epochs": epochs}
                       for d in (8, 16, 32)]
    return points
