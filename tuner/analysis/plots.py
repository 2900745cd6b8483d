"""The report's PNG plots, each a function of the trial and history frames.

Every function writes one file into `out` and returns its path, or returns None when the
experiment has nothing to show for it (e.g. no VAE trials).
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

DPI = 100
FID_LABEL = "FID (FeatureNet-128 features)"


def family(trials: pd.DataFrame) -> pd.Series:
    """The curve colour key: the GAN loss type, or "vae"."""
    loss = trials["loss"] if "loss" in trials else pd.Series(index=trials.index, dtype=object)
    return loss.where(trials["model"] == "gan", "vae").fillna("vae")


def save_figure(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def fid_curves(trials: pd.DataFrame, history: pd.DataFrame, out: Path) -> Path | None:
    """FID per epoch, one panel per dataset (each with its own FID floor), one line per trial."""
    if history.empty or "fid" not in history:
        return None
    keys = family(trials).set_axis(trials["trial_id"])
    colours = {k: f"C{i}" for i, k in enumerate(sorted(keys.unique()))}
    datasets = trials.groupby("dataset", sort=True) if "dataset" in trials else [("", trials)]
    fig, axes = plt.subplots(1, len(datasets), figsize=(7 * len(datasets), 4), squeeze=False)
    for (dataset, group), ax in zip(datasets, axes[0]):
        for trial_id, rows in history[history["trial_id"].isin(group["trial_id"])].groupby("trial_id", sort=False):
            ax.plot(rows["epoch"], rows["fid"], marker="o", ms=3, alpha=0.8, color=colours[keys[trial_id]])
        for key, colour in colours.items():
            ax.plot([], [], color=colour, label=key)
        floor = group["fid_floor"].dropna() if "fid_floor" in group else pd.Series(dtype=float)
        if not floor.empty:
            ax.axhline(floor.median(), color="grey", ls="--", lw=1, label="FID floor (real vs real)")
        ax.set(xlabel="epoch", ylabel=f"{FID_LABEL}, log scale", yscale="log",
               title=f"{dataset}: FID per epoch, one line per trial".lstrip(": "))
        ax.legend(fontsize=8)
    return save_figure(fig, out / "fid_per_epoch.png")


def gan_dynamics(trials: pd.DataFrame, history: pd.DataFrame, out: Path, top: int) -> Path | None:
    """D/G losses and D(x)/D(G(z)) of the best-ranked GAN trials, as in the A5 seed's plots."""
    gans = trials[trials["model"] == "gan"].head(top)
    if gans.empty or "d_loss" not in history:
        return None
    fig, axes = plt.subplots(2, 2, figsize=(10, 6), sharex=True)
    panels = [("d_loss", "D loss"), ("g_loss", "G loss"), ("d_real", "D(x)"), ("d_fake", "D(G(z))")]
    for (column, title), ax in zip(panels, axes.flat):
        for _, trial in gans.iterrows():
            rows = history[history["trial_id"] == trial["trial_id"]]
            ax.plot(rows["epoch"], rows[column], marker="o", ms=3, label=f"#{trial['rank']} {trial['loss']}")
        ax.set(title=title)
    for ax in axes[1]:
        ax.set(xlabel="epoch")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Training dynamics of the best-ranked GAN trials (D(x), D(G(z)): sigmoid for bce, raw critic otherwise)",
                 fontsize=9)
    return save_figure(fig, out / "gan_dynamics.png")


def fid_by_loss_and_zdim(trials: pd.DataFrame, out: Path) -> Path | None:
    gans = trials[(trials["model"] == "gan") & trials["best_fid"].notna()] if "best_fid" in trials else trials[:0]
    if gans.empty or "z_dim" not in gans:
        return None
    datasets = sorted(gans["dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for dataset, ax in zip(datasets, axes[0]):
        rows = gans[gans["dataset"] == dataset].astype({"z_dim": int})  # a legend of 64, not 64.0
        table = rows.pivot_table(index="loss", columns="z_dim", values="best_fid", aggfunc="mean")
        table.plot.bar(ax=ax, rot=0)
        ax.set(title=f"{dataset}: mean best FID by loss and z_dim", ylabel=f"best {FID_LABEL}", xlabel="loss")
        ax.legend(title="z_dim", fontsize=8)
    return save_figure(fig, out / "fid_by_loss_zdim.png")


def vae_by_latent(table: pd.DataFrame, out: Path) -> Path | None:
    """`tables.vae_table`: one line per dataset, never averaged across datasets."""
    if table.empty:
        return None
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    panels = [("total", "total loss"), ("recon", "reconstruction (BCE)"), ("kl", "KL"), ("best_fid", "best FID")]
    for (column, title), ax in zip(panels, axes):
        for dataset, rows in table.groupby("dataset"):
            ax.plot(rows["latent_dim"], rows[column], marker="o", label=dataset)
        ax.set(title=title, xlabel="latent dim", xticks=sorted(table["latent_dim"].unique()),
               ylabel=FID_LABEL if column == "best_fid" else "nats per image, last epoch (train)")
    axes[0].legend(fontsize=8)
    return save_figure(fig, out / "vae_by_latent_dim.png")


def gan_vs_vae(trials: pd.DataFrame, out: Path) -> Path | None:
    if "best_fid" not in trials or trials["model"].nunique() < 2:
        return None
    table = trials[trials["best_fid"].notna()].pivot_table(index="dataset", columns="model", values="best_fid",
                                                           aggfunc="mean")
    if table.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    table.plot.bar(ax=ax, rot=0)
    ax.set(title="Average best FID, GAN vs VAE, per dataset", ylabel=f"mean best {FID_LABEL}")
    return save_figure(fig, out / "gan_vs_vae.png")


def importance_bars(importances: dict[str, pd.Series], out: Path) -> Path | None:
    """One panel per (model family, target) with the parameter importances."""
    if not importances:
        return None
    fig, axes = plt.subplots(1, len(importances), figsize=(5 * len(importances), 3.5), squeeze=False)
    for (title, values), ax in zip(importances.items(), axes[0]):
        values.sort_values().plot.barh(ax=ax, color="C0")
        ax.set(title=title, xlabel="importance (PED-ANOVA)")
    return save_figure(fig, out / "importance.png")


def strip_picks(paths: list[Path]) -> list[Path]:
    """The first, middle and last grid, each once: a trial with two reports shows two grids."""
    return list(dict.fromkeys([paths[0], paths[len(paths) // 2], paths[-1]])) if paths else []


def grid_epoch(path: Path) -> str:
    """The epoch of a grid file named epoch_<epoch>.png."""
    return path.stem.split("_", 1)[1]


def sample_grid_strip(trials: pd.DataFrame, grids: dict[str, list[Path]], out: Path) -> Path | None:
    """First, middle and last evaluated epoch's sample grid for each of the given trials."""
    shown = [(t, strip_picks(grids[t["trial_id"]])) for _, t in trials.iterrows() if grids.get(t["trial_id"])]
    if not shown:
        return None
    fig, axes = plt.subplots(len(shown), 3, figsize=(9, 3.2 * len(shown)), squeeze=False)
    for row, (trial, picks) in zip(axes, shown):
        for ax in row:
            ax.axis("off")
        for ax, path in zip(row, picks):
            ax.imshow(plt.imread(path), cmap="gray")
            ax.set_title(f"#{trial['rank']} {trial['trial_id']} epoch {grid_epoch(path)}", fontsize=8)
    return save_figure(fig, out / "samples_top_trials.png")
