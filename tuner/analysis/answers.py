"""Answers to the seed reports' reflection questions, computed from this experiment's frames.

Each function returns plain sentences built from the numbers; where the experiment cannot
support an answer (too few trials, no contrast), it says so instead of guessing.
"""

import pandas as pd

from tuner.analysis.importance import EVALUATOR_NAME, varied_hyperparameters
from tuner.analysis.ranking import HEALTH_ORDER
from tuner.analysis.settings import HEALTHY
from tuner.objective import hyperparameters

TOP_PARAMS = 3


def _fmt(value) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.3g}"
    return str(value)


def health_position(label: str) -> int:
    """Where a health label sorts: ranking.HEALTH_ORDER's order, unknown labels last."""
    return HEALTH_ORDER.index(label) if label in HEALTH_ORDER else len(HEALTH_ORDER)


def influence(found: dict[str, pd.Series], missing: dict[str, str]) -> list[str]:
    """Which hyperparameters most influenced FID (the objective) and stability (collapse)."""
    lines = []
    for key, scores in found.items():
        top = scores.sort_values(ascending=False).head(TOP_PARAMS)
        ranked = ", ".join(f"{name} ({score:.2f})" for name, score in top.items())
        lines.append(f"{key}: the most influential hyperparameters ({EVALUATOR_NAME}) were {ranked}.")
    for key, why in missing.items():
        lines.append(f"{key}: cannot say from this experiment: {why}.")
    return lines or ["No finished trials: nothing to say about hyperparameter influence yet."]


def collapses(trials: pd.DataFrame, config_keys) -> list[str]:
    """Which evaluated trials ended with a health other than healthy (collapsed, diverged, or any label
    ranking.HEALTH_ORDER adds), by which signal and when; what the healthy ones shared."""
    evaluated = (trials["reports"] > 0 if "reports" in trials else
                 trials["best_fid"].notna() if "best_fid" in trials else trials["health"].notna())
    flagged = trials[evaluated & (trials["health"] != HEALTHY)]
    flagged = flagged.sort_values("health", key=lambda h: h.map(health_position), kind="stable")
    healthy = trials[trials["health"] == HEALTHY]
    lines = []
    for _, t in flagged.iterrows():
        recorded = {k: t[k] for k in config_keys if k in t and pd.notna(t[k])}
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in hyperparameters(recorded).items())
        when = (f"first flagged at epoch {t['first_collapse_epoch']:g}" if pd.notna(t.get("first_collapse_epoch"))
                else "not flagged by the sample detector")
        signal = (t["collapse_reasons"] if isinstance(t.get("collapse_reasons"), str) else
                  "non-finite losses or images" if t.get("diverged") else "no detector reason recorded")
        lines.append(f"Trial {t['trial_id']} ({params}) {t['health']}: {when} ({signal}); "
                     f"flagged in {t['collapsed_fraction']:.0%} of its evaluations; ended as {t['end_reason']}.")
    if flagged.empty:
        lines.append(f"Every evaluated trial among {len(trials)} ended healthy.")
    if healthy.empty:
        lines.append("No trial was healthy at its end, so there is nothing to contrast the flagged ones with.")
        return lines
    if flagged.empty:
        return lines
    for key in varied_hyperparameters(trials, config_keys):
        ok, bad = healthy[key].dropna(), flagged[key].dropna()
        if ok.empty or bad.empty:
            continue
        if pd.api.types.is_numeric_dtype(ok) and ok.nunique() > 4:
            lines.append(f"{key}: median {_fmt(float(ok.median()))} in healthy trials vs "
                         f"{_fmt(float(bad.median()))} in flagged ones.")
        else:
            common = ok.astype(str).value_counts()
            value, count = common.index[0], common.iloc[0]
            bad_share = (bad.astype(str) == value).mean()
            lines.append(f"{key}: {count} of {len(ok)} healthy trials had {key}={value} "
                         f"(vs {bad_share:.0%} of flagged ones).")
    return lines


def vae_tradeoff(table: pd.DataFrame) -> list[str]:
    """How the VAE latent dimension traded reconstruction against sample FID, per dataset
    (`tables.vae_table`): a loss per image on one dataset says nothing about another."""
    if table.empty:
        return ["No VAE trial reported: nothing to say about the latent dimension."]
    lines = []
    for dataset, rows in table.groupby("dataset", sort=True):
        rows = rows.set_index("latent_dim")
        if len(rows) < 2:
            lines.append(f"{dataset}: only latent dim {_fmt(rows.index[0])} was tried: the trade-off needs at "
                         "least two.")
            continue
        low, high = rows.index.min(), rows.index.max()
        best, best_recon = rows["best_fid"].idxmin(), rows["recon"].idxmin()
        lines += [
            f"{dataset}: from latent dim {_fmt(low)} to {_fmt(high)}, reconstruction loss per image went "
            f"{rows.loc[low, 'recon']:.1f} -> {rows.loc[high, 'recon']:.1f} nats, KL {rows.loc[low, 'kl']:.1f} -> "
            f"{rows.loc[high, 'kl']:.1f}, and best sample FID {rows.loc[low, 'best_fid']:.1f} -> "
            f"{rows.loc[high, 'best_fid']:.1f}.",
            f"{dataset}: the lowest sample FID came with latent dim {_fmt(best)} ({rows.loc[best, 'best_fid']:.1f}); "
            f"the lowest reconstruction loss with latent dim {_fmt(best_recon)} ({rows['recon'].min():.1f}).",
        ]
    return lines
