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


def family(trials: pd.DataFrame) -> pd.Series:
    """The curve colour key: the GAN loss type, or "vae"."""
    loss = trials["loss"] if "loss" in trials else pd.Series(index=trials.index, dtype=object)
    return loss.where(trials["model"] == "gan", "vae").fillna("vae")


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def fid_curves(trials: pd.DataFrame, history: pd.DataFrame, out: Path) -> Path | None:
    if history.empty or "fid" not in history:
        return None
    keys = family(trials).set_axis(trials["trial_id"])
    colours = {k: f"C{i}" for i, k in enumerate(sorted(keys.unique()))}
    fig, ax = plt.subplots(figsize=(7, 4))
    for trial_id, rows in history.groupby("trial_id", sort=False):
        ax.plot(rows["epoch"], rows["fid"], marker="o", ms=3, alpha=0.8, color=colours[keys[trial_id]])
    for key, colour in colours.items():
        ax.plot([], [], color=colour, label=key)
    floor = trials["fid_floor"].dropna() if "fid_floor" in trials else pd.Series(dtype=float)
    if not floor.empty:
        ax.axhline(floor.median(), color="grey", ls="--", lw=1, label="FID floor (real vs real)")
    ax.set(xlabel="epoch", ylabel="FID (log scale)", yscale="log", title="FID per epoch, one line per trial")
    ax.legend(fontsize=8)
    return _save(fig, out / "fid_per_epoch.png")


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
    return _save(fig, out / "gan_dynamics.png")


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
        ax.set(title=f"{dataset}: mean best FID by loss and z_dim", ylabel="best FID", xlabel="loss")
        ax.legend(title="z_dim", fontsize=8)
    return _save(fig, out / "fid_by_loss_zdim.png")


def vae_table(trials: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Per latent dim: mean final train loss per image (total, recon, KL) and mean best FID."""
    vaes = trials[trials["model"] == "vae"]
    if vaes.empty or "latent_dim" not in vaes or "recon" not in history:
        return pd.DataFrame()
    final = history.groupby("trial_id")[["loss", "recon", "kl"]].last().rename(columns={"loss": "total"})
    table = vaes[["trial_id", "latent_dim", "best_fid"]].join(final, on="trial_id")
    return table.groupby("latent_dim")[["total", "recon", "kl", "best_fid"]].mean()


def vae_by_latent(table: pd.DataFrame, out: Path) -> Path | None:
    if table.empty:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    table[["total", "recon", "kl"]].plot(ax=left, marker="o")
    left.set(title="VAE loss per image, last epoch (train)", xlabel="latent dim", ylabel="nats per image")
    table["best_fid"].plot(ax=right, marker="o", color="C3")
    right.set(title="VAE best sample FID", xlabel="latent dim", ylabel="best FID")
    return _save(fig, out / "vae_by_latent_dim.png")


def gan_vs_vae(trials: pd.DataFrame, out: Path) -> Path | None:
    if "best_fid" not in trials or trials["model"].nunique() < 2:
        return None
    table = trials[trials["best_fid"].notna()].pivot_table(index="dataset", columns="model", values="best_fid",
                                                           aggfunc="mean")
    if table.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    table.plot.bar(ax=ax, rot=0)
    ax.set(title="Average best FID, GAN vs VAE", ylabel="mean best FID")
    return _save(fig, out / "gan_vs_vae.png")


def importance_bars(importances: dict[str, pd.Series], out: Path) -> Path | None:
    """One panel per (model family, target) with the parameter importances."""
    if not importances:
        return None
    fig, axes = plt.subplots(1, len(importances), figsize=(5 * len(importances), 3.5), squeeze=False)
    for (title, values), ax in zip(importances.items(), axes[0]):
        values.sort_values().plot.barh(ax=ax, color="C0")
        ax.set(title=title, xlabel="importance (PED-ANOVA)")
    return _save(fig, out / "importance.png")


def sample_grid_strip(trials: pd.DataFrame, grids: dict[str, list[Path]], out: Path) -> Path | None:
    """First, middle and last evaluated epoch's sample grid for each of the given trials."""
    shown = [(t, grids[t["trial_id"]]) for _, t in trials.iterrows() if grids.get(t["trial_id"])]
    if not shown:
        return None
    fig, axes = plt.subplots(len(shown), 3, figsize=(9, 3.2 * len(shown)), squeeze=False)
    for row, (trial, paths) in zip(axes, shown):
        picks = list(dict.fromkeys([paths[0], paths[len(paths) // 2], paths[-1]]))  # distinct epochs
        for ax in row:
            ax.axis("off")
        for ax, path in zip(row, picks):
            ax.imshow(plt.imread(path), cmap="gray")
            ax.set_title(f"#{trial['rank']} {trial['trial_id']} {path.stem.replace('_', ' ')}", fontsize=8)
    return _save(fig, out / "samples_top_trials.png")
