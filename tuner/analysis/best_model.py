"""The report's best-model sections: the best model's file, a large grid of its samples, the command
that retrains its configuration from scratch, and a latent interpolation grid of the best GAN."""

import pickle
import shlex
from pathlib import Path

import pandas as pd
import torch

from models.data import USER_DATA_OPTIONS, from_gan_range
from models.errors import UserInputError
from models.grids import save_grid
from models.vae import interpolate_latents
from tuner.analysis.frames import recorded_spec
from tuner.handover import BEST_GENERATOR, best_generator_file, load_generator, read_generator, sample
from tuner.trainers import TRAINERS

BEST_SAMPLES, BEST_SAMPLES_PER_ROW, BEST_SAMPLES_SEED = 100, 10, 0
INTERPOLATION_PAIRS, INTERPOLATION_STEPS, INTERPOLATION_SEED = 8, 10, 0
UNREADABLE = (pickle.UnpicklingError, RuntimeError, OSError, EOFError, KeyError, UserInputError)
DATA_OPTIONS = ("limit", "data_dir", *USER_DATA_OPTIONS)  # the search's, which models.train takes as flags too


def retrain_config(experiment, experiment_dir, trial_id: str) -> dict:
    """The trial's config as Ray recorded it (model, dataset, epochs, seed and every hyperparameter it
    ran with) plus the search's data options (search-spec.json), so the command trains on the same images."""
    config = dict(next(t for t in experiment.trials if t.trial_id == trial_id).config)
    spec = recorded_spec(experiment_dir)
    return {**config, **{k: spec[k] for k in DATA_OPTIONS if spec.get(k) is not None}}


def generator_blocks(path: Path, experiment_dir, best: pd.Series, plot_dir: Path) -> list:
    """Where the best trial's generator file is and a grid of its samples; a file torch's weights-only
    loader refuses (anything but tensors and plain containers) or cannot read is named, not sampled."""
    try:
        generator, meta = read_generator(path)
    except UNREADABLE as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return [("p", f"{path} cannot be loaded as a generator, so it is not sampled here ({reason}).")]
    blocks = [("p", f"Trial {best['trial_id']}'s generator at its best evaluation by objective (epoch "
                    f"{meta['epoch']:g}, objective {meta['objective']:.4g}): {path}. Load it with "
                    f"tuner.handover.load_generator({str(experiment_dir)!r}) or sample it with "
                    f"python -m tuner.sample {shlex.quote(str(experiment_dir))} --n 64 --out grid.png.")]
    if meta["value_range"] is not None:
        grid = save_grid(sample(generator, meta, BEST_SAMPLES, BEST_SAMPLES_SEED), plot_dir / "best_samples.png",
                         nrow=BEST_SAMPLES_PER_ROW)
        blocks.append(("img", (grid, f"{BEST_SAMPLES} samples of the best model ({BEST_GENERATOR} of trial "
                                     f"{best['trial_id']}, seed {BEST_SAMPLES_SEED}).")))
    return blocks


def best_model_blocks(experiment, experiment_dir, best: pd.Series, plot_dir: Path) -> list:
    """Report blocks for the rank-1 trial `best` (a row of the trials frame)."""
    from models.train import retrain_command

    blocks = [("h2", "Best model")]
    path = best_generator_file(best["path"])
    if path is None:
        blocks.append(("p", f"Trial {best['trial_id']} kept no {BEST_GENERATOR} (it has no evaluation yet, its "
                            "trainer is a plug-in, or the experiment predates the file)."))
    else:
        blocks += generator_blocks(path, experiment_dir, best, plot_dir)
    if best["model"] not in TRAINERS:
        return blocks + [("p", f"Its trainer is a plug-in ({best['model']}): retrain it with that trainer; "
                               "models.train trains the built-in GAN and VAE only.")]
    return blocks + [("p", "Retrain this configuration from scratch:"),
                     ("pre", retrain_command(retrain_config(experiment, experiment_dir, best["trial_id"])))]


def interpolation_images(generator, meta: dict, pairs: int, steps: int, seed: int) -> torch.Tensor:
    """`pairs` rows of `steps` images each: the generator along the straight line between two latent
    codes drawn from N(0, I), ends included, in [0, 1]."""
    ends = torch.randn(2 * pairs, meta["z_dim"], generator=torch.Generator().manual_seed(seed))
    z = torch.cat([interpolate_latents(ends[2 * i], ends[2 * i + 1], steps) for i in range(pairs)])
    with torch.no_grad():
        images = generator(z.to(next(generator.parameters()).device)).cpu()
    return from_gan_range(images) if meta["output_range"] == [-1.0, 1.0] else images


def gan_interpolation_blocks(experiment_dir, trials: pd.DataFrame, plot_dir: Path) -> list:
    """A latent interpolation grid of the best-ranked GAN's kept generator (VAEs get theirs from their
    checkpoints, drawn between training images' codes)."""
    gans = trials[(trials["model"] == "gan") & trials["best_fid"].notna()]
    if gans.empty:
        return []
    best = gans.iloc[0]
    try:
        generator, _, meta = load_generator(experiment_dir, best["trial_id"])
    except UNREADABLE as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return [("p", f"No latent interpolation for GAN trial {best['trial_id']}: its generator cannot be "
                      f"loaded ({reason}).")]
    if meta["value_range"] is None:  # a 2-D toy set: points, not images
        return []
    images = interpolation_images(generator, meta, INTERPOLATION_PAIRS, INTERPOLATION_STEPS, INTERPOLATION_SEED)
    path = save_grid(images, plot_dir / "best_gan_interpolations.png", nrow=INTERPOLATION_STEPS)
    return [("img", (path, f"Best GAN (#{best['rank']} {best['trial_id']}, {best['health']}, {BEST_GENERATOR} "
                           f"from epoch {meta['epoch']:g}): each row walks a straight line in latent space "
                           f"between two random codes (seed {INTERPOLATION_SEED}), ends included."))]
