"""Train one GAN or VAE without Ray.

    python -m models.train --model gan --loss hinge --z-dim 32 --dataset fashion_mnist \
        --epochs 1 --data-dir DIR --out DIR

Writes OUT/config.json, OUT/metrics.jsonl (one line per epoch), OUT/samples/*.png and
OUT/checkpoint.pt (latest; `--resume` continues from it exactly).
"""

import json
import os
from dataclasses import fields
from pathlib import Path

import torch

from models.config import OPTIMIZERS, GANConfig, VAEConfig
from models.data import DATA_DIR_ENV, DATASETS, from_gan_range, load_dataset
from models.errors import ArgumentParser, UserInputError, exit_on_user_error
from models.gan_trainer import GANTrainer
from models.grids import save_grid, save_points, save_vae_grids
from models.losses import LOSSES
from models.nets import ARCHS
from models.vae_trainer import VAETrainer


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m models.train", description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=("gan", "vae"), default="gan", help="what to train (default: gan)")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=DATASETS, default="fashion_mnist", help="dataset (default: fashion_mnist)")
    data.add_argument("--data-dir", help=f"where datasets live or are downloaded to (default: ${DATA_DIR_ENV} "
                      "or ~/.cache/gantune/datasets)")
    data.add_argument("--no-download", action="store_true", help="never download; fail if the data is not on disk")
    data.add_argument("--idx-images", help="IDX image file (with --dataset idx)")
    data.add_argument("--idx-labels", help="IDX label file (with --dataset idx)")
    data.add_argument("--image-size", type=int, help="resize images to this square size (default: native)")
    data.add_argument("--limit", type=int, help="train on a fixed random subset of this many examples")

    gan = p.add_argument_group("GAN (defaults per loss: see models/config.py)")
    gan.add_argument("--loss", choices=LOSSES, default="bce", help="GAN loss (default: bce)")
    gan.add_argument("--arch", choices=ARCHS, default="dcgan", help="network pair (default: dcgan)")
    gan.add_argument("--z-dim", type=int, default=64, help="noise dimension (default: 64)")
    gan.add_argument("--lr-g", type=float, help="generator learning rate (default: per loss)")
    gan.add_argument("--lr-d", type=float, help="discriminator learning rate (default: --lr-g)")
    gan.add_argument("--beta1", type=float, help="Adam beta1 (default: 0.5)")
    gan.add_argument("--beta2", type=float, help="Adam beta2 (default: 0.9 for wgan-gp, else 0.999)")
    gan.add_argument("--optimizer", choices=OPTIMIZERS, help="default: rmsprop for wgan, adam otherwise")
    gan.add_argument("--n-critic", type=int, help="D steps per G step (default: 5 for wgan/wgan-gp, else 1)")
    gan.add_argument("--clip-value", type=float, default=0.01, help="wgan weight clip (default: 0.01)")
    gan.add_argument("--gp-lambda", type=float, default=10.0, help="wgan-gp penalty weight (default: 10)")
    gan.add_argument("--real-label", type=float, default=1.0, help="bce real target; 0.9 = one-sided smoothing")
    gan.add_argument("--spectral-norm", action="store_true", help="spectral norm on the discriminator")

    vae = p.add_argument_group("VAE")
    vae.add_argument("--latent-dim", type=int, default=16, help="latent dimension (default: 16)")
    vae.add_argument("--lr", type=float, default=1e-3, help="VAE learning rate (default: 1e-3)")
    vae.add_argument("--beta", type=float, default=1.0, help="KL weight (default: 1)")
    vae.add_argument("--regularized", action="store_true", help="BatchNorm + dropout in the VAE")

    run = p.add_argument_group("run")
    run.add_argument("--width", type=int, help="base channel width (default: 64 GAN, 32 VAE)")
    run.add_argument("--batch-size", type=int, help="batch size (default: 64 GAN, 128 VAE)")
    run.add_argument("--epochs", type=int, default=10, help="epochs (default: 10)")
    run.add_argument("--seed", type=int, default=0, help="random seed; same seed, same run (default: 0)")
    run.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    run.add_argument("--out", default="runs/train", help="output directory (default: runs/train)")
    run.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(args):
    cls = GANConfig if args.model == "gan" else VAEConfig
    names = {f.name for f in fields(cls)}
    values = {k: v for k, v in vars(args).items() if k in names and v is not None}
    return cls(**values)


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


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    device = resolve_device(args.device)
    for name in ("image_size", "limit"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            raise UserInputError(f"{name}: must be > 0, got {getattr(args, name)}")
    data_kw = dict(data_dir=args.data_dir, image_size=args.image_size, download=not args.no_download,
                   idx_images=args.idx_images, idx_labels=args.idx_labels, seed=args.seed)
    train = load_dataset(args.dataset, train=True, **data_kw)
    if args.limit:
        train = train.subset(args.limit, seed=args.seed)
    trainer = (GANTrainer if args.model == "gan" else VAETrainer)(config, train, device)

    out = Path(args.out)
    checkpoint = out / "checkpoint.pt"
    if args.resume:
        if not checkpoint.is_file():
            raise UserInputError(f"resume: no checkpoint at {checkpoint}")
        trainer.load_state_dict(torch.load(checkpoint, map_location=device, weights_only=True))
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({"model": args.model, "dataset": args.dataset,
                                                 **config.to_dict()}, indent=2))
    test = None if args.model == "gan" else load_dataset(args.dataset, train=False, **data_kw)

    print(f"training {args.model} on {args.dataset} ({len(train)} examples) on {device}; writing to {out}")
    with open(out / "metrics.jsonl", "a") as log:
        while trainer.epoch < config.epochs:
            metrics = trainer.train_epoch(progress=not args.quiet)
            epoch = round(trainer.epoch)
            tag = f"epoch_{epoch:03d}"
            if args.model == "vae":
                metrics.update(trainer.test_loss(test.images))
                save_vae_grids(trainer, test.images, out / "samples", tag)
            elif train.is_image:
                save_grid(from_gan_range(trainer.sample()), out / "samples" / f"{tag}.png")
            else:
                save_points(trainer.sample(1000), train.images, out / "samples" / f"{tag}.png")
            log.write(json.dumps(metrics) + "\n")
            log.flush()
            save_checkpoint(trainer.state_dict(), checkpoint)
            print(f"epoch {epoch}/{config.epochs} " + " ".join(
                f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)), flush=True)
            if metrics["diverged"]:
                print(f"stopped: non-finite losses at epoch {epoch} (diverged)")
                break


if __name__ == "__main__":
    exit_on_user_error(main)
