"""Side by side with the labs: the seed labs' own figures (seed-results.json) next to what this
experiment measured at the same grid points, one table per dataset and model.

A trial matches a lab run when it is the same model on the same dataset with the same loss and
z_dim (GANs, DCGAN only: the labs trained DCGANs) or the same latent dim (VAEs). Epochs may
differ; the table then says the budgets differ. Every lab figure is read from the JSON file, and
figures are never averaged across datasets or runs: each row is one lab run and one trial.
"""

import json
import re
from pathlib import Path

import pandas as pd

from models.data import resolve_data_dir
from tuner.analysis.tables import final_losses

SEED_RESULTS = "seed-results.json"
GAN_KEYS, VAE_KEYS = ["dataset", "loss", "z_dim"], ["dataset", "latent_dim"]
LAB_COLUMNS = {"run": "lab_run", "dataset": "dataset", "model": "model", "loss_type": "loss", "z_dimension": "z_dim",
               "latent_dimension": "latent_dim", "final_d_loss": "lab_d_loss", "final_g_loss": "lab_g_loss",
               "final_total_loss": "lab_total", "final_recon_loss": "lab_recon", "final_kl_loss": "lab_kl",
               "proxy_fid_score": "lab_proxy_fid"}
GAN_COLUMNS = ["loss", "z_dim", "lab_epochs", "our_epochs", "lab_d_loss", "our_d_loss", "lab_g_loss", "our_g_loss",
               "lab_proxy_fid", "our_final_fid", "our_best_fid", "our_health", "trial_id"]
VAE_COLUMNS = ["latent_dim", "lab_epochs", "our_epochs", "lab_total", "our_total", "lab_recon", "our_recon", "lab_kl",
               "our_kl", "our_beta", "lab_proxy_fid", "our_final_fid", "our_best_fid", "our_health", "trial_id"]
ROUNDING = 1e-3  # the lab's figures are printed to 4 decimals: a sum of two may be off by this much


def seed_results_path(path=None, data_dir=None) -> Path:
    """`path`, else seed-results.json beside the data directory (<data dir>/../seed-results.json, the
    data dir resolved as the trials resolve it: --data-dir, $GANTUNE_DATA_DIR, the default)."""
    return Path(path).expanduser() if path else resolve_data_dir(data_dir).parent / SEED_RESULTS


def read_seed_results(path: Path) -> dict | None:
    """The file's JSON, or None when it is missing or is not a JSON object with runs."""
    try:
        seed = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return seed if isinstance(seed, dict) and isinstance(seed.get("runs"), list) else None


def lab_epochs(seed: dict) -> int | None:
    """The epochs every lab run trained, as the file's source note states them ("10 epochs each")."""
    found = re.search(r"(\d+) epochs", str(seed.get("source", "")))
    return int(found.group(1)) if found else None


def lab_runs(seed: dict) -> pd.DataFrame:
    """One row per lab run, its fields renamed to this project's names (loss, z_dim, latent_dim)."""
    runs = pd.DataFrame(seed["runs"]).rename(columns=LAB_COLUMNS)
    return runs.assign(lab_epochs=lab_epochs(seed))


def our_runs(trials: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Each trial's final training losses (its last report: the mean over its last epoch's batches),
    its final and best FID, its epochs and health, under the side-by-side names."""
    final = final_losses(history, ["d_loss", "g_loss", "loss", "recon", "kl"]).rename(columns={
        "d_loss": "our_d_loss", "g_loss": "our_g_loss", "loss": "our_total", "recon": "our_recon", "kl": "our_kl"})
    return trials.join(final, on="trial_id").rename(columns={
        "epochs_run": "our_epochs", "final_fid": "our_final_fid", "best_fid": "our_best_fid", "health": "our_health",
        "beta": "our_beta"})


def side_by_side(trials: pd.DataFrame, history: pd.DataFrame, seed: dict) -> dict[str, pd.DataFrame]:
    """{"gan": table, "vae": table}: one row per (lab run, matching trial), with the dataset column;
    a model with no match is left out."""
    labs, ours = lab_runs(seed), our_runs(trials, history)
    tables = {}
    for model, keys, columns in (("gan", GAN_KEYS, GAN_COLUMNS), ("vae", VAE_KEYS, VAE_COLUMNS)):
        mine = ours[ours["model"] == model]
        if model == "gan" and "arch" in mine:
            mine = mine[mine["arch"].isna() | (mine["arch"] == "dcgan")]
        lab = labs[labs["model"] == model]
        if mine.empty or lab.empty or not set(keys) <= set(mine) or not set(keys) <= set(lab):
            continue
        mine = mine.dropna(subset=keys).astype({k: lab[k].dtype for k in keys})
        table = lab.merge(mine, on=keys, how="inner", suffixes=("", "_ours"))
        if not table.empty:
            tables[model] = table[["dataset"] + [c for c in columns if c in table]].sort_values(
                keys, kind="stable").reset_index(drop=True)
    return tables


def total_is_recon_plus_kl(seed: dict) -> bool | None:
    """Whether every lab VAE's total equals its recon + KL (to the printed rounding); None without VAEs."""
    labs = lab_runs(seed)
    vaes = labs[labs["model"] == "vae"] if {"lab_total", "lab_recon", "lab_kl"} <= set(labs) else labs[:0]
    if vaes.empty:
        return None
    return bool(((vaes["lab_total"] - vaes["lab_recon"] - vaes["lab_kl"]).abs() <= ROUNDING).all())


def _span(values: pd.Series) -> str:
    low, high = values.min(), values.max()
    return f"{low:g}" if low == high else f"{low:g} to {high:g}"


def budget_note(tables: dict[str, pd.DataFrame], spec: dict) -> str:
    rows = pd.concat(tables.values())
    lab, ours = rows["lab_epochs"].dropna().unique(), rows["our_epochs"].dropna().unique()
    limit = f"; ours trained on {spec['limit']:,} images per dataset (--limit)" if spec.get("limit") else ""
    if len(lab) == 0:
        return (f"Epochs: seed-results.json does not state the lab's epochs; ours ran "
                f"{_span(rows['our_epochs'])}{limit}.")
    if set(ours) == set(lab) and not limit:
        return f"Epochs: the same budget, {lab[0]:g} epochs each."
    return (f"The budgets differ: the lab trained {lab[0]:g} epochs per run, these trials "
            f"{_span(rows['our_epochs'])}{limit}, so their losses and FIDs are at another stage of training.")


def comparability_notes(tables: dict[str, pd.DataFrame], seed: dict, spec: dict) -> list[str]:
    """One sentence per column group: whether our number and the lab's can be compared."""
    labs = lab_runs(seed)
    notes = [budget_note(tables, spec)]
    if "gan" in tables:
        notes.append("D and G losses: ours are the mean over the last epoch's batches of bce's BCE(real) + "
                     "BCE(fake) and -log D(G(z)), or hinge's E[relu(1 - D(x))] + E[relu(1 + D(G(z)))] and "
                     "-E[D(G(z))]; seed-results.json does not record the lab's formulas or averaging, so the two "
                     "agree in kind (same loss, same sign) but are not guaranteed to be the same quantity.")
    if "vae" in tables:
        summed = total_is_recon_plus_kl(seed)
        lab_units = (f"the lab's total is its recon + KL in every run (beta 1) and its reconstruction terms "
                     f"({_span(labs['lab_recon'].dropna())} per image) are on the scale of a BCE summed over "
                     "the 784 pixels, far above a per-pixel mean (below 1)" if summed else
                     "the lab's total is not its recon + KL in every run, so its units cannot be inferred")
        notes.append("VAE total, recon and KL: ours are per image in nats, the BCE summed over the pixels plus "
                     "the KL summed over the latent dimensions, averaged over the last epoch's training batches "
                     f"(total = recon + beta x KL, beta in our_beta); {lab_units}; the lab's split is not "
                     "stated, ours is the training set during training, so compare them as the same units, "
                     "not the same measurement" + ("." if summed else ", and only recon and KL term by term."))
    notes.append(f"FID: not comparable: the lab's proxy FID ({_span(labs['lab_proxy_fid'].dropna())}) is "
                 "undefined in its report, ours is FID in gantune's FeatureNet-128 space (see Run settings), "
                 "final at the last epoch and best over all epochs.")
    notes.append("Health: ours only; the lab recorded no collapse verdict.")
    return notes


def labs_blocks(trials: pd.DataFrame, history: pd.DataFrame, spec: dict, path: Path) -> list:
    """The report's side-by-side section; nothing when no trial matches a lab run (or, outside the
    seed-grid space, when the lab's file is not here)."""
    seed = read_seed_results(path)
    if seed is None:
        return ([("p", f"Side by side with the labs: {path} is missing or unreadable, so the lab's figures "
                       "are not shown.")] if spec.get("space") == "seed-grid" else [])
    tables = side_by_side(trials, history, seed)
    if not tables:
        return []
    blocks = [("h2", "Side by side with the labs"),
              ("p", f"The labs' figures from {path} (\"{seed.get('source', '')}\"), next to this experiment's "
                    "trials at the same grid points, one table per dataset: nothing is averaged across "
                    "datasets or runs.")]
    for model, table in tables.items():
        for dataset, rows in table.groupby("dataset", sort=True):
            blocks += [("h3", f"{dataset}: {model.upper()}s"),
                       ("table", rows.drop(columns="dataset").reset_index(drop=True))]
    return blocks + [("ul", comparability_notes(tables, seed, spec))]
