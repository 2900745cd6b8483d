"""How the search paid off: the best healthy FID against the trial-epochs spent, and the trade-off
between FID and stability (the fraction of evaluations flagged collapsed) with its Pareto front.

The frames come first as pure functions of the trials and history frames; the plots draw them.
"""

import math
from pathlib import Path

import numpy as np
import pandas as pd

from tuner.analysis.plots import FID_LABEL, plt, save_figure
from tuner.analysis.ranking import HEALTH_ORDER
from tuner.analysis.settings import HEALTHY


def best_so_far(trials: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """One row per trial that reported, in the order the trials finished (their last report's time; a
    trial still running counts at its latest report): the trial-epochs spent by the trials finished
    so far and the best FID of the healthy ones among them (NaN until the first healthy one)."""
    if history.empty or "timestamp" not in history:
        return pd.DataFrame(columns=["trial_id", "health", "trial_epochs", "best_healthy_fid"])
    finished = history.groupby("trial_id", sort=False)["timestamp"].max().rename("finished_at")
    frame = trials.join(finished, on="trial_id").dropna(subset=["finished_at"])
    frame = frame.sort_values(["finished_at", "trial_id"], kind="stable")
    healthy_fid = frame["best_fid"].where(frame["health"] == HEALTHY)
    return pd.DataFrame({"trial_id": frame["trial_id"], "health": frame["health"],
                         "trial_epochs": frame["epochs_run"].cumsum(),
                         "best_healthy_fid": healthy_fid.cummin().ffill()}).reset_index(drop=True)


def pareto_front(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials no other trial beats on both best FID and collapsed fraction (lower is better on
    both), sorted by collapsed fraction. Trials without a finite FID take no part."""
    points = trials[np.isfinite(trials["best_fid"].astype(float)) & trials["collapsed_fraction"].notna()]
    points = points.sort_values(["collapsed_fraction", "best_fid"], kind="stable")
    front, lowest_fid = [], math.inf
    for index, trial in points.iterrows():
        if trial["best_fid"] < lowest_fid:
            front.append(index)
            lowest_fid = trial["best_fid"]
    return points.loc[front]


def health_colours(labels) -> dict[str, str]:
    """A fixed colour per health label, in ranking.HEALTH_ORDER, then any label it does not list."""
    ordered = list(HEALTH_ORDER) + sorted(set(labels) - set(HEALTH_ORDER))
    return {label: f"C{i % 10}" for i, label in enumerate(ordered)}


def best_so_far_plot(curve: pd.DataFrame, out: Path) -> Path | None:
    if curve.empty:
        return None
    colours = health_colours(curve["health"])
    fig, ax = plt.subplots(figsize=(7, 4))
    any_healthy = curve["best_healthy_fid"].notna().any()
    if any_healthy:
        ax.step(curve["trial_epochs"], curve["best_healthy_fid"], where="post", color="black",
                label="best healthy FID so far")
    else:  # no FID axis to read: say so where the curve would be
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no trial is healthy: no best FID to draw", transform=ax.transAxes, ha="center")
    for label, rows in curve.groupby("health", sort=False):
        ax.scatter(rows["trial_epochs"], [0.02] * len(rows), transform=ax.get_xaxis_transform(), marker="|",
                   s=200, color=colours[label], label=f"{label} trial finished")
    # the markers, on an axes-blended transform, do not widen the x limits themselves
    ax.set(xlabel="trial-epochs spent (trials in the order they finished)", ylabel=FID_LABEL if any_healthy else "",
           xlim=(0, float(curve["trial_epochs"].max()) + 0.5),
           title="Best healthy FID against the compute spent" + ("" if any_healthy else ": no trial is healthy"))
    ax.legend(fontsize=8)
    return save_figure(fig, out / "best_so_far.png")


def fid_vs_collapse_plot(trials: pd.DataFrame, out: Path) -> Path | None:
    points = trials[np.isfinite(trials["best_fid"].astype(float)) & trials["collapsed_fraction"].notna()] \
        if {"best_fid", "collapsed_fraction"} <= set(trials) else trials[:0]
    if points.empty:
        return None
    colours = health_colours(points["health"])
    front = pareto_front(points)
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, rows in points.groupby("health", sort=False):
        ax.scatter(rows["collapsed_fraction"], rows["best_fid"], color=colours[label], label=label, zorder=3)
    ax.plot(front["collapsed_fraction"], front["best_fid"], color="black", lw=1, marker="o", mfc="none", ms=12,
            label="Pareto front", zorder=2)
    for _, trial in points.iterrows():
        ax.annotate(f"#{trial['rank']}", (trial["collapsed_fraction"], trial["best_fid"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    wide = points["best_fid"].max() > 10 * points["best_fid"].min()
    ax.set(xlabel="fraction of evaluations flagged collapsed", yscale="log" if wide else "linear",
           ylabel=f"best {FID_LABEL}" + (", log scale" if wide else ""),
           title="FID against stability, one point per trial")
    ax.legend(fontsize=8)
    return save_figure(fig, out / "fid_vs_collapse.png")
