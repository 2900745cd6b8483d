"""Train one GAN or VAE without Ray.

    python -m models.train --model gan --loss hinge --z-dim 32 --dataset fashion_mnist \
        --epochs 1 --data-dir DIR --out DIR

Writes OUT/config.json, OUT/metrics.jsonl (one line per epoch: training metrics and the same
evaluation a tuning trial gets: FID, KID, the collapse verdict), OUT/samples/*.png and
OUT/checkpoint.pt (latest; `--resume` continues from it exactly).
"""

import json
import os
import shlex
from pathlib import Path

import torch

from models.config import LR_DECAYS, OPTIMIZERS, GANConfig, VAEConfig
from models.data import DATA_DIR_ENV, DATASETS, from_gan_range, load_dataset
from models.errors import ArgumentParser, UserInputError, exit_on_user_error, require_non_negative
from models.evaluation import Evaluator
from models.gan_trainer import GANTrainer
from models.grids import save_grid, save_points, save_vae_grids
from models.losses import LOSSES, specific_params
from models.nets import ARCHS, D_NORMS
from models.vae_trainer import VAETrainer

DEFAULT_EVAL_SAMPLES = 2000  # as a tuning trial's default
HISTORY_KEYS = ("d_loss", "g_loss", "loss", "diverged")  # the training history the collapse detector reads
ALWAYS_IN_COMMAND = ("model", "dataset")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m models.train", description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=("gan", "vae"), default="gan", help="what to train (default: gan)")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=list(DATASETS), default="fashion_mnist",
                      help="dataset (default: fashion_mnist)")
    data.add_argument("--data-dir", help=f"where datasets live or are downloaded to (default: ${DATA_DIR_ENV} "
                      "or ~/.cache/gantune/datasets)")
    data.add_argument("--no-download", action="store_true", help="never download; fail if the data is not on disk")
    data.add_argument("--idx-images", help="IDX image file (with --dataset idx)")
    data.add_argument("--idx-labels", help="IDX label file (with --dataset idx)")
    data.add_argument("--image-size", type=int, help="resize images to this square size (default: native)")
    data.add_argument("--limit", type=int, help="train on a fixed random subset of this many examples")

    gan = p.add_argument_group("GAN (defaults per loss: see models/losses.py)")
    gan.add_argument("--loss", choices=list(LOSSES), default="bce", help="GAN loss (default: bce)")
    gan.add_argument("--arch", choices=list(ARCHS), default="dcgan", help="network pair (default: dcgan)")
    gan.add_argument("--z-dim", type=int, default=64, help="noise dimension (default: 64)")
    gan.add_argument("--lr-g", type=float, help="generator learning rate (default: per loss)")
    gan.add_argument("--lr-d", type=float, help="discriminator learning rate (default: --lr-g)")
    gan.add_argument("--beta1", type=float, help="Adam beta1 (default: 0.5)")
    gan.add_argument("--beta2", type=float, help="Adam beta2 (default: 0.9 for wgan-gp, else 0.999)")
    gan.add_argument("--optimizer", choices=OPTIMIZERS, help="default: rmsprop for wgan, adam otherwise")
    gan.add_argument("--n-critic", type=int, help="D steps per G step (default: 5 for wgan/wgan-gp, else 1)")
    for name, param in specific_params().items():
        users = " or ".join(e.name for e in LOSSES.values() if name in e.specific)
        gan.add_argument("--" + name.replace("_", "-"), type=float,
                         help=f"{users} only: {param.help} (default: {param.default:g})")
    gan.add_argument("--d-norm", choices=D_NORMS, default="none",
                     help="discriminator normalisation (default: none; batch is invalid with wgan-gp)")
    gan.add_argument("--ema-decay", type=float, default=0.0,
                     help="decay of the EMA of G that samples and evaluation use, e.g. 0.999 (default: 0, off)")
    gan.add_argument("--ema-start", type=float, default=0.0,
                     help="epochs before the EMA starts averaging; until then it equals G (default: 0)")
    gan.add_argument("--lr-decay", choices=LR_DECAYS, default="none",
                     help="linear: both learning rates fall to 0 over --epochs (default: none)")

    vae = p.add_argument_group("VAE")
    vae.add_argument("--latent-dim", type=int, default=16, help="latent dimension (default: 16)")
    vae.add_argument("--lr", type=float, default=1e-3, help="VAE learning rate (default: 1e-3)")
    vae.add_argument("--beta", type=float, default=1.0, help="KL weight (default: 1)")
    vae.add_argument("--regularized", action="store_true", help="BatchNorm + dropout in the VAE")
    vae.add_argument("--dropout", type=float, default=0.2, help="dropout with --regularized (default: 0.2)")

    run = p.add_argument_group("run")
    run.add_argument("--width", type=int, help="base channel width (default: 64 GAN, 32 VAE)")
    run.add_argument("--batch-size", type=int, help="batch size (default: 64 GAN, 128 VAE)")
    run.add_argument("--epochs", type=int, default=10, help="epochs (default: 10)")
    run.add_argument("--seed", type=int, default=0, help="random seed; same seed, same run (default: 0)")
    run.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    run.add_argument("--out", default="runs/train", help="output directory (default: runs/train)")
    run.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    run.add_argument("--eval-samples", type=int,
                     help=f"generated images evaluated each epoch (FID, KID, collapse verdict) as in a tuning "
                     f"trial; 0 skips (default: {DEFAULT_EVAL_SAMPLES} for image datasets, 0 for the 2-D toy sets)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(args):
    cls = GANConfig if args.model == "gan" else VAEConfig
    return cls.from_dict({k: v for k, v in vars(args).items() if k in cls.keys() and v is not None})


def retrain_command(config: dict) -> str:
    """The `python -m models.train ...` command that trains `config` (a trial's config: model,
    dataset, hyperparameters) from scratch. Every config field whose value differs from its flag's
    default is spelled out, defaults per loss included, so the command stays exact if those change.
    Other keys become flags where models.train has one (limit, data_dir, ...) and are dropped otherwise."""
    flag_defaults = vars(build_parser().parse_args([]))
    model = config.get("model", "gan")
    cls = GANConfig if model == "gan" else VAEConfig
    resolved = cls.from_dict({k: v for k, v in config.items() if k in cls.keys()}).to_dict()
    values = {**{k: v for k, v in config.items() if k in flag_defaults}, "model": model, **resolved}
    words = ["python", "-m", "models.train"]
    for key, value in values.items():
        if value == flag_defaults[key] and key not in ALWAYS_IN_COMMAND:
            continue
        flag = "--" + key.replace("_", "-")
        is_switch = isinstance(flag_defaults[key], bool)  # a store_true flag: present or absent
        words += [flag] if is_switch else [flag, str(value)]
    return shlex.join(words)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserInputError(f"device: {name} requested but CUDA is not available; use cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserInputError(f"device: {name!r} is not one of auto, cpu, cuda, cuda:N") from None


def save_checkpoint(state: dict, path: Path) -> None:
    """Atomic: a crash mid-write leaves the previous checkpoint intact."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_evaluator(args, train, device, n: int):
    """The Evaluator a tuning trial on this dataset gets."""
    evaluator = Evaluator.for_dataset(args.dataset, args.data_dir, n_samples=n).to(device)
    if evaluator.image_shape != train.shape:
        raise UserInputError(f"eval_samples: {args.dataset}'s evaluator scores {evaluator.image_shape} images, "
                             f"this run makes {train.shape} ones; pass --eval-samples 0")
    return evaluator


def evaluate(trainer, evaluator, n: int, history: list, is_gan: bool) -> dict:
    """The evaluation fields of a trial's report: fid, fid_floor, kid, the collapse verdict and its signals."""
    samples = trainer.sample(n)
    evaluation = evaluator.evaluate(from_gan_range(samples) if is_gan else samples, history=history[-5:])
    return {**evaluation, "reasons": "; ".join(evaluation["reasons"])}


def read_history(metrics_file: Path) -> list[dict]:
    """The training history of the epochs already logged, for the collapse detector after --resume."""
    lines = metrics_file.read_text().splitlines() if metrics_file.is_file() else []
    return [{k: m[k] for k in HISTORY_KEYS if k in m} for m in map(json.loads, lines)]


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    device = resolve_device(args.device)
    for name in ("image_size", "limit"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            raise UserInputError(f"{name}: must be > 0, got {getattr(args, name)}")
    if args.eval_samples is not None:
        require_non_negative("eval_samples", args.eval_samples)
    data_kw = dict(data_dir=args.data_dir, image_size=args.image_size, download=not args.no_download,
                   idx_images=args.idx_images, idx_labels=args.idx_labels, seed=args.seed)
    train = load_dataset(args.dataset, train=True, **data_kw)
    if args.limit:
        train = train.subset(args.limit, seed=args.seed)
    trainer = (GANTrainer if args.model == "gan" else VAETrainer)(config, train, device)
    eval_samples = args.eval_samples
    if eval_samples is None:
        eval_samples = DEFAULT_EVAL_SAMPLES if train.is_image else 0
    evaluator = load_evaluator(args, train, device, eval_samples) if eval_samples else None

    out = Path(args.out)
    checkpoint, metrics_file = out / "checkpoint.pt", out / "metrics.jsonl"
    history = []
    if args.resume:
        if not checkpoint.is_file():
            raise UserInputError(f"resume: no checkpoint at {checkpoint}")
        trainer.load_state_dict(torch.load(checkpoint, map_location=device, weights_only=True))
        history = read_history(metrics_file)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({"model": args.model, "dataset": args.dataset,
                                                 **config.to_dict()}, indent=2))
    test = None if args.model == "gan" else load_dataset(args.dataset, train=False, **data_kw)

    print(f"training {args.model} on {args.dataset} ({len(train)} examples) on {device}; writing to {out}")
    with open(metrics_file, "a" if args.resume else "w") as log:
        while trainer.epoch < config.epochs:
            metrics = trainer.train_epoch(progress=not args.quiet)
            history.append({k: metrics[k] for k in HISTORY_KEYS if k in metrics})
            epoch = round(trainer.epoch)
            tag = f"epoch_{epoch:03d}"
            if args.model == "vae":
                metrics.update(trainer.test_loss(test.images))
                save_vae_grids(trainer, test.images, out / "samples", tag)
            elif train.is_image:
                save_grid(from_gan_range(trainer.sample()), out / "samples" / f"{tag}.png")
            else:
                save_points(trainer.sample(1000), train.images, out / "samples" / f"{tag}.png")
            if evaluator:
                evaluation = evaluate(trainer, evaluator, eval_samples, history, args.model == "gan")
                metrics.update(evaluation, diverged=metrics["diverged"] or evaluation["diverged"])
            log.write(json.dumps(metrics) + "\n")
            log.flush()
            save_checkpoint(trainer.state_dict(), checkpoint)
            print(f"epoch {epoch}/{config.epochs} " + " ".join(
                f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)), flush=True)
            if metrics["diverged"]:
                print(f"stopped: non-finite losses or images at epoch {epoch} (diverged)")
                break


if __name__ == "__main__":
    exit_on_user_error(main)
