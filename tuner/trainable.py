"""The Ray Tune function trainable: config dict -> trainer; train, evaluate, report, checkpoint.

The datasets and their evaluators arrive once through Ray's object store
(`tune.with_parameters`), never loaded from disk by a trial.
"""

import math
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ray
import torch
from ray import tune

from models.config import GANConfig, VAEConfig
from models.data import from_gan_range
from models.gan_trainer import GANTrainer
from models.grids import save_grid, save_vae_grids
from models.vae_trainer import VAETrainer
from tuner.objective import end_reason, objective

TRAINER_STATE = "trainer.pt"
GRIDS = "grids"  # checkpoint folder with the fixed-noise grid of every report so far: epoch_<epoch>.png
VAE_GRID_IMAGES = 24  # training images behind the VAE reconstruction and interpolation grids
RUN_KEYS = ("model", "dataset")  # trial config keys that are not trainer hyperparameters


@dataclass(frozen=True)
class TrialSettings:
    """How every trial of one experiment runs; the same for all, so not part of the search."""
    eval_samples: int = 2000
    collapse_patience: int = 2  # consecutive collapsed evaluations before the stopper ends a trial
    steps_per_report: int = 0  # 0: report once per epoch
    collapse_warmup: float = 0  # epochs whose collapsed verdicts are penalised but never stop the trial


def build_trainer(config: dict, data, device: torch.device):
    hyper = {k: v for k, v in config.items() if k not in RUN_KEYS}
    if config["model"] == "vae":
        return VAETrainer(VAEConfig.from_dict(hyper), data, device)
    return GANTrainer(GANConfig.from_dict(hyper), data, device)


def trial_device() -> torch.device:
    """CUDA when Ray gave this trial a GPU (any fraction of one), else CPU."""
    if ray.get_gpu_ids() and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def train_trial(config: dict, *, datasets: dict, settings: TrialSettings) -> None:
    """Function trainable. `datasets` maps a dataset name to (training Dataset, Evaluator)."""
    device = trial_device()
    data, evaluator = datasets[config["dataset"]]
    evaluator.to(device)
    trainer = build_trainer(config, data, device)
    history, streak, grids = [], 0, {}
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as path:
            state = torch.load(Path(path) / TRAINER_STATE, map_location=device, weights_only=False)
        trainer.load_state_dict(state["trainer"])
        history, streak, grids = state["history"], state["collapse_streak"], state["grids"]
    epochs = trainer.config.epochs
    is_gan = config["model"] == "gan"

    while trainer.epoch < epochs - 1e-9:
        started = time.perf_counter()
        if settings.steps_per_report:
            left = round((epochs - trainer.epoch) * len(trainer.batches))
            metrics = trainer.train_steps(min(settings.steps_per_report, left))
        else:
            metrics = trainer.train_epoch()
        history.append({k: metrics[k] for k in ("d_loss", "g_loss", "loss", "diverged") if k in metrics})

        eval_started = time.perf_counter()
        samples = trainer.sample(settings.eval_samples)
        samples = from_gan_range(samples) if is_gan else samples
        evaluation = evaluator.evaluate(samples, history=history[-5:])
        eval_seconds = time.perf_counter() - eval_started
        diverged = metrics["diverged"] or evaluation["diverged"]
        streak = streak + 1 if evaluation["collapsed"] and trainer.epoch > settings.collapse_warmup else 0
        reason = end_reason(diverged, streak, settings.collapse_patience, trainer.epoch >= epochs - 1e-9)

        with tempfile.TemporaryDirectory() as tmp:
            grid = trainer.sample()
            grids[f"epoch_{trainer.epoch:g}.png"] = save_grid(
                from_gan_range(grid) if is_gan else grid, Path(tmp) / "samples.png").read_bytes()
            (Path(tmp) / GRIDS).mkdir()
            for name, png in grids.items():  # the latest checkpoint (always kept) holds every epoch's grid
                (Path(tmp) / GRIDS / name).write_bytes(png)
            if not is_gan:
                save_vae_grids(trainer, data.images[:VAE_GRID_IMAGES].to(device), tmp, tag="train")
            torch.save({"trainer": trainer.state_dict(), "history": history, "collapse_streak": streak,
                        "grids": grids}, Path(tmp) / TRAINER_STATE)
            report = {
                **{k: v for k, v in metrics.items() if k != "diverged"},
                **{k: v for k, v in evaluation.items() if k not in ("reasons", "diverged")},
                "reasons": "; ".join(evaluation["reasons"]),
                "diverged": diverged, "collapse_streak": streak, "end_reason": reason,
                "objective": objective(evaluation["fid"], evaluation["collapsed"], diverged),
                "eval_seconds": eval_seconds, "report_seconds": time.perf_counter() - started,
                "node_ip": ray.util.get_node_ip_address(), "hostname": socket.gethostname(),
                "pid": os.getpid(), "device": str(device),
            }
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(tmp))  # blocks; CollapseStopper may end us here
