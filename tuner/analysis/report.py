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
from tuner.analysis import answers, plots
from tuner.analysis.best_model import best_model_blocks
from tuner.analysis.frames import history_frame, latest_checkpoint, open_experiment, recorded_spec, trials_frame
from tuner.analysis.importance import EVALUATOR_NAME, all_importances
from tuner.analysis.ranking import __doc__ as RANKING_RULES

RANK_COLUMNS = ["rank", "trial_id", "model", "dataset", "loss", "z_dim", "latent_dim", "best_fid", "fid_floor",
                "epoch_of_best_fid", "final_fid", "best_kid", "health", "end_reason", "collapsed_fraction",
                "epochs_run", "wall_time_s"]
STABILITY_COLUMNS = ["stability_rank", "trial_id", "model", "loss", "health", "collapsed_fraction",
                     "fid_worsening", "d_loss_spread", "g_loss_spread", "loss_spread", "max_loss_jump", "best_fid"]
VAE_GRIDS = {"reconstructions_train.png": "training images (top) and their reconstructions",
             "samples_train.png": "samples from the prior",
             "interpolations_train.png": "interpolations between pairs of training images"}


def epoch_grids(trial_path: str) -> list[Path]:
    """The fixed-noise grid of every report, in epoch order, from the latest checkpoint."""
    checkpoint = latest_checkpoint(trial_path)
    if checkpoint is None:
        return []
    return sorted((checkpoint / "grids").glob("epoch_*.png"), key=lambda p: float(p.stem.split("_", 1)[1]))


def config_keys(trials: pd.DataFrame, experiment) -> list[str]:
    keys = []
    for trial in experiment.trials:
        keys += [k for k in trial.config if k not in keys]
    return [k for k in keys if k in trials]


def shown(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return frame[[c for c in columns if c in frame and frame[c].notna().any()]]


def unreadable_lines_note(trials: pd.DataFrame) -> list:
    """A paragraph naming the trials whose result.json had lines that are not JSON (skipped)."""
    damaged = trials[trials["unreadable_lines"] > 0] if "unreadable_lines" in trials else trials[:0]
    if damaged.empty:
        return []
    listed = ", ".join(f"{t['trial_id']} ({t['unreadable_lines']})" for _, t in damaged.iterrows())
    return [("p", f"Skipped lines of result.json that are not JSON (a write cut short or a damaged copy), per "
                  f"trial: {listed}. Every other report of these trials is shown.")]


def build_blocks(experiment, experiment_dir, out: Path, top: int) -> tuple[list, pd.DataFrame, pd.DataFrame]:
    """The report's content as (kind, payload) blocks, with the trials and history frames."""
    trials, history = trials_frame(experiment, recorded_spec(experiment_dir)), history_frame(experiment)
    name = Path(str(experiment_dir).rstrip("/")).name
    blocks = [("h1", f"GAN/VAE search report: {name}"),
              ("p", f"Experiment: {experiment_dir}. Written {time.strftime('%Y-%m-%d %H:%M:%S')}.")]
    blocks += unreadable_lines_note(trials)
    if trials.empty or history.empty:
        blocks.append(("p", f"No finished reports yet: {len(trials)} trial(s) known to Ray, none has reported "
                            "an evaluation. Nothing to rank or plot."))
        return blocks, trials, history
    reasons = ", ".join(f"{k} {v}" for k, v in trials["end_reason"].value_counts().items())
    healths = ", ".join(f"{k} {v}" for k, v in trials["health"].value_counts().items())
    best = trials.iloc[0]
    blocks += [("p", f"{len(trials)} trials, {len(history)} reports. End reasons: {reasons}. Health: {healths}."),
               ("p", f"Best trial: {best['trial_id']} ({best['model']}), best FID {best['best_fid']:.2f} at epoch "
                     f"{best['epoch_of_best_fid']:g}, against an FID floor of {best['fid_floor']:.2f} "
                     "(two disjoint real samples of the same size: what a perfect model would score).")]
    plot_dir = out / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    blocks += best_model_blocks(experiment, experiment_dir, best, plot_dir)
    blocks += [("h2", "Ranking"), ("pre", RANKING_RULES.split("\n\n", 1)[1].strip()),
               ("h3", "By quality"), ("table", shown(trials, RANK_COLUMNS)),
               ("h3", "By stability"), ("table", shown(trials.sort_values("stability_rank"), STABILITY_COLUMNS))]

    vae_table = plots.vae_table(trials, history)
    top_trials = trials[trials["best_fid"].notna()].head(top)
    grids = {t["trial_id"]: epoch_grids(t["path"]) for _, t in top_trials.iterrows()}
    figures = [
        (plots.fid_curves(trials, history, plot_dir), "FID per epoch, one line per trial, coloured by loss type."),
        (plots.gan_dynamics(trials, history, plot_dir, top), "D/G losses and D(x)/D(G(z)) of the top GAN trials."),
        (plots.fid_by_loss_and_zdim(trials, plot_dir), "Mean best FID by GAN loss and z_dim, per dataset."),
        (plots.vae_by_latent(vae_table, plot_dir), "VAE loss terms and best FID by latent dimension."),
        (plots.gan_vs_vae(trials, plot_dir), "Average best FID of GAN and VAE trials, per dataset."),
        (plots.sample_grid_strip(top_trials, grids, plot_dir),
         "Fixed-noise samples of the top trials at their first, middle and last evaluated epoch."),
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
                                       f"checkpoint: {what}")))
    if not vae_table.empty:
        blocks += [("h3", "VAE by latent dimension (means)"), ("table", vae_table.reset_index())]

    keys = config_keys(trials, experiment)
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


def _cell(value) -> str:
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
            lines += ["| " + " | ".join(_cell(v).replace("|", "/") for v in row) + " |"
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
            body.append(payload.map(_cell).to_html(index=False, border=0, escape=True))
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


def write_report(experiment_dir, out=None, top: int = 3) -> Path:
    """Write every report file into `out` (default EXPERIMENT_DIR/report); returns report.html's path.
    The experiment is read before anything is created, so a wrong path leaves no folder behind."""
    experiment = open_experiment(experiment_dir)
    out = Path(out) if out else Path(str(experiment_dir)) / "report"
    require_writable("out", out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        blocks, trials, history = build_blocks(experiment, experiment_dir, out, top)
        trials.to_csv(out / "trials.csv", index=False)
        trials.to_parquet(out / "trials.parquet", index=False)
        history.to_parquet(out / "history.parquet", index=False)
        (out / "report.md").write_text(to_markdown(blocks, out))
        (out / "report.html").write_text(to_html(blocks))
    except OSError as err:  # a full disk, a mount gone while writing
        raise UserInputError(f"out: cannot write the report to {out} ({err.strerror or err})") from None
    return out / "report.html"
