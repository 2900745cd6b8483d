"""VAE search space: Optuna define-by-run, like the GAN spaces."""


def vae_space(trial) -> dict:
    trial.suggest_categorical("latent_dim", [8, 16, 32, 64])
    trial.suggest_float("lr", 1e-4, 3e-3, log=True)
    trial.suggest_float("beta", 0.25, 4.0, log=True)
    trial.suggest_categorical("regularized", [False, True])
    trial.suggest_categorical("batch_size", [32, 64, 128])  # same choices as the GAN space: Optuna shares the name
    return {"model": "vae"}


def smoke_vae_space(trial) -> dict:
    trial.suggest_categorical("latent_dim", [8, 16])
    trial.suggest_float("lr", 5e-4, 3e-3, log=True)
    return {"model": "vae", "width": 16, "batch_size": 64}
