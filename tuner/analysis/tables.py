"""The report's tables: the ranking with every searched hyperparameter, and per-dataset GAN and VAE
summaries. Figures from different datasets are never averaged together: an FID or a loss per image
on MNIST and on Fashion-MNIST measure different things."""

import pandas as pd

from tuner.analysis.importance import varied_hyperparameters
from tuner.analysis.settings import HEALTHY
from tuner.objective import NON_HYPERPARAMETER_KEYS

IDENTITY_COLUMNS = ["rank", "trial_id", "model", "dataset", "loss", "z_dim", "latent_dim"]
RESULT_COLUMNS = ["best_fid", "fid_floor", "epoch_of_best_fid", "final_fid", "best_kid", "health", "end_reason",
                  "collapsed_fraction", "classes_covered", "epochs_run", "wall_time_s"]
STABILITY_COLUMNS = ["stability_rank", "trial_id", "model", "loss", "health", "collapsed_fraction",
                     "fid_worsening", "d_loss_spread", "g_loss_spread", "loss_spread", "max_loss_jump", "best_fid"]


def shown(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The columns that exist and hold at least one value, in the given order."""
    return frame[[c for c in columns if c in frame and frame[c].notna().any()]]


def searched_hyperparameters(trials: pd.DataFrame, config_keys: list[str]) -> list[str]:
    """Config keys that tell trials of one model apart: those that took more than one value among
    that model's trials, and those only some of them have (a loss's own field, such as real_label
    for bce). A value every trial of a model shares was pinned or a default, not searched."""
    found = []
    for _, group in trials.groupby("model", sort=False):
        keys = [k for k in config_keys if k in group and k not in NON_HYPERPARAMETER_KEYS]
        found += varied_hyperparameters(group, keys)
        found += [k for k in keys if 0 < group[k].notna().sum() < len(group)]
    return [k for k in config_keys if k in found and k not in IDENTITY_COLUMNS]


def classes_covered(trials: pd.DataFrame, history: pd.DataFrame, num_classes: dict) -> pd.Series:
    """Classes the samples cover at each trial's last evaluation, as the collapse detector's reasons
    state it (a share of the dataset's classes), with the count: "7 of 10 (70%)"."""
    if "coverage" not in history:
        return pd.Series(None, index=trials.index, dtype=object)
    last = history.dropna(subset=["coverage"]).groupby("trial_id")["coverage"].last()

    def text(trial) -> str | None:
        covered, classes = last.get(trial["trial_id"]), num_classes.get(trial.get("dataset"))
        if covered is None or pd.isna(covered):
            return None
        return f"{covered:g} of {classes} ({covered / classes:.0%})" if classes else f"{covered:g}"
    return trials.apply(text, axis=1)


def ranking_table(trials: pd.DataFrame, history: pd.DataFrame, config_keys: list[str],
                  num_classes: dict) -> pd.DataFrame:
    frame = trials.assign(classes_covered=classes_covered(trials, history, num_classes))
    return shown(frame, IDENTITY_COLUMNS + searched_hyperparameters(trials, config_keys) + RESULT_COLUMNS)


def final_losses(history: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Each trial's last reported value of each column (its last training epoch's mean)."""
    present = [c for c in columns if c in history]
    if not present:
        return pd.DataFrame(index=pd.Index([], name="trial_id"))
    return history.groupby("trial_id")[present].last()


def vae_table(trials: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and latent dim: trials, mean final training loss per image (total, recon, KL)
    and mean best FID."""
    vaes = trials[trials["model"] == "vae"]
    if vaes.empty or "latent_dim" not in vaes or "recon" not in history:
        return pd.DataFrame()
    final = final_losses(history, ["loss", "recon", "kl"]).rename(columns={"loss": "total"})
    table = vaes[["trial_id", "dataset", "latent_dim", "best_fid"]].join(final, on="trial_id")
    grouped = table.groupby(["dataset", "latent_dim"])
    return grouped[["total", "recon", "kl", "best_fid"]].mean().join(grouped.size().rename("trials")).reset_index()


def gan_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, loss and z_dim: trials, how many are healthy, mean and lowest best FID."""
    gans = trials[trials["model"] == "gan"]
    if gans.empty or "loss" not in gans or "z_dim" not in gans:
        return pd.DataFrame()
    gans = gans.assign(healthy=gans["health"] == HEALTHY, z_dim=gans["z_dim"].astype("Int64"))
    grouped = gans.groupby(["dataset", "loss", "z_dim"])
    return pd.DataFrame({"trials": grouped.size(), "healthy": grouped["healthy"].sum(),
                         "mean_best_fid": grouped["best_fid"].mean(),
                         "lowest_best_fid": grouped["best_fid"].min()}).reset_index()


def per_dataset(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A summary table split into one table per dataset (the dataset column dropped)."""
    if table.empty:
        return {}
    return {name: rows.drop(columns="dataset").reset_index(drop=True)
            for name, rows in table.groupby("dataset", sort=True)}
