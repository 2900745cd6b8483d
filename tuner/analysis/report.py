"""The experiment report: trials.csv/.parquet, history.parquet, PNG plots, report.md and a
self-contained report.html (every image embedded), all from `load_trials` and `load_history`.

Both documents are rendered from one list of blocks, so they carry the same numbers.
"""

import base64
import html
import math
import shutil
import time
from pathlib import Path

import pandas as pd

from models.errors import UserInputError, require_writable
from tuner.analysis import answers, labs, plots, progress, tables
from tuner.analysis.best_model import best_model_blocks, gan_interpolation_blocks
from tuner.analysis.frames import (effective_config, history_frame, latest_checkpoint, open_experiment, recorded_spec,
                                   trials_frame)
from tuner.analysis.importance import EVALUATOR_NAME, all_importances
from tuner.analysis.ranking import __doc__ as RANKING_RULES
from tuner.analysis.settings import METRIC, dataset_facts, datasets_of, no_healthy_blocks, settings_blocks

VAE_GRIDS = {"reconstructions_train.png": "training images (top) and their reconstructions",
             "samples_train.png": "decoded samples from the prior N(0, I) (not training images)",
             "interpolations_train.png": "decoded interpolations between the latent codes of pairs of training "
                                         "images"}


def epoch_grids(trial_path: str) -> list[Path]:
    """The fixed-noise grid of every report, in epoch order, from the latest checkpoint."""
    checkpoint = latest_checkpoint(trial_path)
    if checkpoint is None:
        return []
    return sorted((checkpoint / "grids").glob("epoch_*.png"), key=lambda p: float(plots.grid_epoch(p)))


def config_keys(trials: pd.DataFrame, experiment) -> list[str]:
    """Every config key of any trial, defaults filled in (a bce trial's real_label is one)."""
    keys = []
    for trial in experiment.trials:
        keys += [k for k in effective_config(trial.config) if k not in keys]
    return [k for k in keys if k in trials]


def unreadable_lines_note(trials: pd.DataFrame) -> list:
    """A paragraph naming the trials whose result.json had lines that are not JSON (skipped)."""
    damaged = trials[trials["unreadable_lines"] > 0] if "unreadable_lines" in trials else trials[:0]
    if damaged.empty:
        return []
    listed = ", ".join(f"{t['trial_id']} ({t['unreadable_lines']})" for _, t in damaged.iterrows())
    return [("p", f"Skipped lines of result.json that are not JSON (a write cut short or a damaged copy), per "
                  f"trial: {listed}. Every other report of these trials is shown.")]


def strip_caption(top_trials: pd.DataFrame, grids: dict) -> str:
    """Which epochs the sample strip shows for each trial (each epoch once)."""
    shown = [f"#{t['rank']} {t['trial_id']}: epochs "
             + ", ".join(plots.grid_epoch(p) for p in plots.strip_picks(grids[t["trial_id"]]))
             for _, t in top_trials.iterrows() if grids.get(t["trial_id"])]
    return ("Fixed-noise samples of the top trials at their first, middle and last evaluated epoch, each epoch "
            f"once ({'; '.join(shown)}).")


def summary_blocks(trials: pd.DataFrame, history: pd.DataFrame) -> list:
    reasons = ", ".join(f"{k} {v}" for k, v in trials["end_reason"].value_counts().items())
    healths = ", ".join(f"{k} {v}" for k, v in trials["health"].value_counts().items())
    best = trials.iloc[0]
    return [("p", f"{len(trials)} trials, {len(history)} reports. End reasons: {reasons}. Health: {healths}."),
            ("p", f"Best trial: {best['trial_id']} ({best['model']}), best FID {best['best_fid']:.2f} at epoch "
                  f"{best['epoch_of_best_fid']:g}, against an FID floor of {best['fid_floor']:.2f} "
                  "(two disjoint real samples of the same size: what a perfect model would score). Every FID "
                  f"in this report is {METRIC}.")]


def summary_tables(trials: pd.DataFrame, vae_table: pd.DataFrame) -> list:
    """The GAN (loss x z_dim) and VAE (latent dim) summaries, one table per dataset."""
    blocks = []
    for dataset, table in tables.per_dataset(tables.gan_table(trials)).items():
        blocks += [("h3", f"GANs on {dataset} by loss and z_dim"), ("table", table)]
    for dataset, table in tables.per_dataset(vae_table).items():
        blocks += [("h3", f"VAEs on {dataset} by latent dimension (final training loss per image, means over "
                          "trials)"), ("table", table)]
    return blocks


def build_blocks(experiment, experiment_dir, out: Path, top: int,
                 seed_results=None) -> tuple[list, pd.DataFrame, pd.DataFrame]:
    """The report's content as (kind, payload) blocks, with the trials and history frames.
    `seed_results`: the labs' seed-results.json (default: `labs.seed_results_path`)."""
    spec = recorded_spec(experiment_dir)
    trials, history = trials_frame(experiment, spec), history_frame(experiment)
    name = Path(str(experiment_dir).rstrip("/")).name
    facts = {dataset: dataset_facts(dataset, spec) for dataset in datasets_of(trials, spec)}
    blocks = [("h1", f"GAN/VAE search report: {name}"), *no_healthy_blocks(trials),
              ("p", f"Experiment: {experiment_dir}. Written {time.strftime('%Y-%m-%d %H:%M:%S')}.")]
    blocks += unreadable_lines_note(trials)
    blocks += settings_blocks(spec, trials, facts)
    if trials.empty or history.empty:
        blocks.append(("p", f"No finished reports yet: {len(trials)} trial(s) known to Ray, none has reported "
                            "an evaluation. Nothing to rank or plot."))
        return blocks, trials, history
    blocks += summary_blocks(trials, history)
    plot_dir = out / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    keys = config_keys(trials, experiment)
    num_classes = {dataset: fact.num_classes for dataset, fact in facts.items()}
    blocks += best_model_blocks(experiment, experiment_dir, trials.iloc[0], plot_dir)
    blocks += [("h2", "Ranking"), ("pre", RANKING_RULES.split("\n\n", 1)[1].strip()),
               ("p", f"FID: {METRIC}. classes_covered: the classes the samples of the last evaluation cover "
                     "(a class counts when it gets at least half its real share), as the collapse reasons "
                     "state it."),
               ("h3", "By quality"), ("table", tables.ranking_table(trials, history, keys, num_classes)),
               ("h3", "By stability"),
               ("table", tables.shown(trials.sort_values("stability_rank"), tables.STABILITY_COLUMNS))]

    curve = progress.best_so_far(trials, history)
    blocks += [("h2", "Search progress")]
    blocks += [("img", (path, caption)) for path, caption in [
        (progress.best_so_far_plot(curve, plot_dir),
         "Best FID among the healthy trials finished so far, against the trial-epochs all finished trials "
         "spent, trials in the order they finished; ticks mark each trial's finish, coloured by health."),
        (progress.fid_vs_collapse_plot(trials, plot_dir),
         "Best FID against the fraction of evaluations flagged collapsed, one point per trial (#rank), coloured "
         "by health; the line joins the Pareto front: trials no other trial beats on both.")] if path is not None]

    vae_table = tables.vae_table(trials, history)
    top_trials = trials[trials["best_fid"].notna()].head(top)
    grids = {t["trial_id"]: epoch_grids(t["path"]) for _, t in top_trials.iterrows()}
    figures = [
        (plots.fid_curves(trials, history, plot_dir), "FID per epoch, one panel per dataset, one line per trial, "
                                                      "coloured by loss type."),
        (plots.gan_dynamics(trials, history, plot_dir, top), "D/G losses and D(x)/D(G(z)) of the top GAN trials."),
        (plots.fid_by_loss_and_zdim(trials, plot_dir), "Mean best FID by GAN loss and z_dim, per dataset."),
        (plots.vae_by_latent(vae_table, plot_dir), "VAE loss terms and best FID by latent dimension, one line per "
                                                   "dataset."),
        (plots.gan_vs_vae(trials, plot_dir), "Average best FID of GAN and VAE trials, per dataset."),
        (plots.sample_grid_strip(top_trials, grids, plot_dir), strip_caption(top_trials, grids)),
    ]
    blocks.append(("h2", "Plots"))
    blocks += [("img", (path, caption)) for path, caption in figures if path is not None]
    best_vae = trials[(trials["model"] == "vae") & trials["best_fid"].notna()].head(1)
    if not best_vae.empty:
        checkpoint = latest_checkpoint(best_vae.iloc[0]["path"])
        for grid, what in VAE_GRIDS.items():
            if checkpoint is not None and (checkpoint / grid).is_file():
                target = shutil.copy(checkpoint / grid, plot_dir / f"best_vae_{grid}")
                blocks.append(("img", (Path(target), f"Best VAE ({best_vae.iloc[0]['trial_id']}), latest "
                                       f"checkpoint: {what}.")))
    blocks += gan_interpolation_blocks(experiment_dir, trials, plot_dir)
    blocks += summary_tables(trials, vae_table)
    blocks += labs.labs_blocks(trials, history, spec, labs.seed_results_path(seed_results, spec.get("data_dir")))

    found, missing = all_importances(trials, keys)
    blocks.append(("h2", f"Hyperparameter importance ({EVALUATOR_NAME}, Optuna)"))
    if found:
        table = pd.DataFrame(found).rename_axis("parameter").reset_index()
        blocks += [("table", table), ("img", (plots.importance_bars(found, plot_dir),
                                              "Importance of each hyperparameter for the objective and for collapse."))]
    blocks += [("p", f"{key}: not computed: {why}.") for key, why in missing.items()]

    blocks += [("h2", "Reflection questions, answered from this experiment"),
               ("h3", "Which hyperparameters most influenced stability and FID?"),
               ("ul", answers.influence(found, missing)),
               ("h3", "Which trials collapsed, by what signal and when; what did the healthy ones have in common?"),
               ("ul", answers.collapses(trials, keys)),
               ("h3", "How did the VAE latent dimension trade reconstruction against sample FID?"),
               ("ul", answers.vae_tradeoff(vae_table))]
    errored = trials[trials["error"].notna()] if "error" in trials else trials[:0]
    if not errored.empty:
        blocks += [("h2", "Errors"), ("table", errored[["trial_id", "end_reason", "num_failures", "error"]])]
    return blocks, trials, history


def format_cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def to_markdown(blocks, out: Path) -> str:
    lines = []
    for kind, payload in blocks:
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + payload, ""]
        elif kind == "p":
            lines += [payload, ""]
        elif kind == "pre":
            lines += ["```", payload, "```", ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in payload] + [""]
        elif kind == "table":
            lines += ["| " + " | ".join(map(str, payload.columns)) + " |",
                      "|" + "---|" * len(payload.columns)]
            lines += ["| " + " | ".join(format_cell(v).replace("|", "/") for v in row) + " |"
                      for row in payload.itertuples(index=False)] + [""]
        elif kind == "img":
            path, caption = payload
            lines += [f"![{caption}]({path.relative_to(out).as_posix()})", f"*{caption}*", ""]
    return "\n".join(lines)


def to_html(blocks) -> str:
    body = []
    for kind, payload in blocks:
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{html.escape(payload)}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{html.escape(payload)}</p>")
        elif kind == "pre":
            body.append(f"<pre>{html.escape(payload)}</pre>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in payload) + "</ul>")
        elif kind == "table":
            body.append(payload.map(format_cell).to_html(index=False, border=0, escape=True))
        elif kind == "img":
            path, caption = payload
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
             "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
             "img{max-width:100%}figcaption{font-style:italic;font-size:13px}")
    title = html.escape(blocks[0][1])
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style>"
            f"</head><body>{''.join(body)}</body></html>\n")


def write_report(experiment_dir, out=None, top: int = 3, seed_results=None) -> Path:
    """Write every report file into `out` (default EXPERIMENT_DIR/report); returns report.html's path.
    The experiment is read before anything is created, so a wrong path leaves no folder behind.
    `seed_results`: the labs' seed-results.json (default: beside the data directory)."""
    experiment = open_experiment(experiment_dir)
    out = Path(out) if out else Path(str(experiment_dir)) / "report"
    require_writable("out", out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        blocks, trials, history = build_blocks(experiment, experiment_dir, out, top, seed_results)
        trials.to_csv(out / "trials.csv", index=False)
        trials.to_parquet(out / "trials.parquet", index=False)
        history.to_parquet(out / "history.parquet", index=False)
        (out / "report.md").write_text(to_markdown(blocks, out))
        (out / "report.html").write_text(to_html(blocks))
    except OSError as err:  # a full disk, a mount gone while writing
        raise UserInputError(f"out: cannot write the report to {out} ({err.strerror or err})") from None
    return out / "report.html"
