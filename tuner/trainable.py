"""The Ray Tune function trainable: config dict -> trainer; train, evaluate, report, checkpoint.

The trainer comes from the factory config["model"] names (tuner/trainers.py: the built-in GAN
and VAE, or a user's own), all through one protocol, so evaluation, checkpoints, the collapse
stopper and ASHA treat them alike.

The datasets and their evaluators arrive once through Ray's object store
(`tune.with_parameters`), never loaded from disk by a trial.

Every node needs the project installed. So that a node without it says so, this module is
pickled by value (its code travels with the trial) and imports the project only inside the
trial: on a node that has Ray and torch but not the project, the trial starts and fails with one
line naming the node and the missing package, instead of Ray's "failed to import" traceback.
For the same reason the driver may pass each dataset as an ObjectRef (tuner.build does), which
the trial fetches only after that check.
"""

import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ray
import ray.cloudpickle
import torch
from ray import tune

TRAINER_STATE = "trainer.pt"
SCATTER_POINTS = 1000  # generated points drawn over the real ones for a 2-D toy trial's picture
GRIDS = "grids"  # checkpoint folder with the fixed-noise grid of every report so far: epoch_<epoch>.png


class ProjectNotInstalled(RuntimeError):
    """This node's Python cannot import the project, so no trial can run there."""


def require_project() -> None:
    """Import what a trial needs, or fail with one line naming this node and the missing package."""
    try:
        import models.grids, tuner.handover, tuner.objective, tuner.trainers  # noqa: E401, F401
    except ImportError as err:
        node = (f"{ray.util.get_node_ip_address()} (host {socket.gethostname()}, "
                f"node id {ray.get_runtime_context().get_node_id()[:12]})")
        raise ProjectNotInstalled(
            f"node {node} cannot run trials: package {err.name!r} is missing there ({err}); "
            "install the project on every node (cluster.yaml's setup_commands do)") from None


@dataclass(frozen=True)
class TrialSettings:
    """How every trial of one experiment runs; the same for all, so not part of the search."""
    eval_samples: int = 2000
    collapse_patience: int = 2  # consecutive collapsed evaluations before the stopper ends a trial
    steps_per_report: int = 0  # 0: report once per epoch
    collapse_warmup: float = 0  # epochs whose collapsed verdicts are penalised but never stop the trial
    searcher_epoch: float = 1  # the searcher learns each trial's objective at this epoch: ASHA's first rung


def trial_device() -> torch.device:
    """CUDA when Ray gave this trial a GPU (any fraction of one), else CPU."""
    if ray.get_gpu_ids() and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def train_trial(config: dict, *, datasets: dict, settings: TrialSettings) -> None:
    """Function trainable. `datasets` maps a dataset name to (training Dataset, Evaluator), or to an
    ObjectRef of that pair. config["model"] names the trainer factory (tuner/trainers.py)."""
    require_project()
    from models.grids import save_grid, save_points
    from tuner.handover import BestGenerator
    from tuner.objective import decide_end, objective, searcher_objective
    from tuner.trainers import build_trainer

    device = trial_device()
    pair = datasets[config["dataset"]]
    data, evaluator = ray.get(pair) if isinstance(pair, ray.ObjectRef) else pair
    evaluator.to(device)
    trainer = build_trainer(config, data, device)
    history, streak, grids, rung, state = [], 0, {}, None, {}
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as path:
            # weights_only: a checkpoint handed over or copied back from storage cannot run code here
            state = torch.load(Path(path) / TRAINER_STATE, map_location=device, weights_only=True)
        trainer.load_state_dict(state["trainer"])
        history, streak, grids = state["history"], state["collapse_streak"], state["grids"]
        rung = state.get("searcher_rung")  # absent from checkpoints of earlier versions
    best = BestGenerator.from_state(state.get("best_generator"))  # the best evaluation's generator so far
    epochs = config["epochs"]

    while trainer.epoch < epochs - 1e-9:
        started = time.perf_counter()
        metrics = trainer.train_steps(settings.steps_per_report) if settings.steps_per_report else trainer.train_epoch()
        metrics.setdefault("diverged", False)
        history.append({k: metrics[k] for k in ("d_loss", "g_loss", "loss", "diverged") if k in metrics})

        eval_started = time.perf_counter()
        evaluation = evaluator.evaluate(trainer.sample(settings.eval_samples), history=history[-5:])
        eval_seconds = time.perf_counter() - eval_started
        diverged = metrics["diverged"] or evaluation["diverged"]
        counted = evaluation["collapsed"] and trainer.epoch > settings.collapse_warmup  # memorised ones too
        streak = streak + 1 if counted else 0
        reason = decide_end(diverged, streak, settings.collapse_patience, trainer.epoch >= epochs - 1e-9,
                            memorized=evaluation["memorized"])
        if rung is None or trainer.epoch <= settings.searcher_epoch + 1e-9:
            rung = (evaluation["fid"], counted)  # what the searcher learns (see searcher_objective)
        report = {
            **{k: v for k, v in metrics.items() if k != "diverged"},
            **{k: v for k, v in evaluation.items() if k not in ("reasons", "diverged")},
            "reasons": "; ".join(evaluation["reasons"]),
            "diverged": diverged, "collapse_streak": streak, "end_reason": reason.value if reason else None,
            "objective": objective(evaluation["fid"], evaluation["collapsed"], diverged),
            "rung_objective": objective(evaluation["fid"], counted, diverged),  # what ASHA compares
            "searcher_objective": searcher_objective(*rung, reason),
            "eval_seconds": eval_seconds,
            "node_ip": ray.util.get_node_ip_address(), "hostname": socket.gethostname(),
            "pid": os.getpid(), "device": str(device),
        }
        best.update(trainer, config, report["objective"], trainer.epoch)

        with tempfile.TemporaryDirectory() as tmp:
            picture = Path(tmp) / "samples.png"  # images: a grid; 2-D points: generated over real, a scatter
            saved = (save_grid(trainer.sample(), picture) if getattr(data, "is_image", True) else
                     save_points(trainer.sample(SCATTER_POINTS), data.images, picture))
            grids[f"epoch_{trainer.epoch:g}.png"] = saved.read_bytes()
            (Path(tmp) / GRIDS).mkdir()
            for name, png in grids.items():  # the latest checkpoint (always kept) holds every epoch's grid
                (Path(tmp) / GRIDS / name).write_bytes(png)
            if hasattr(trainer, "save_images"):
                trainer.save_images(tmp)
            best.write(tmp)  # in every checkpoint, so pruning never loses the best weights
            torch.save({"trainer": trainer.state_dict(), "history": history, "collapse_streak": streak,
                        "grids": grids, "searcher_rung": rung, "best_generator": best.state()},
                       Path(tmp) / TRAINER_STATE)
            report["report_seconds"] = time.perf_counter() - started
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(tmp))  # blocks; a stopper may end us here


# Last, with everything above defined: trials carry this module's code (see the docstring).
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
