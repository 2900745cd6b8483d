"""Train one GAN or VAE without Ray.

    python -m models.train --model gan --loss hinge --z-dim 32 --dataset fashion_mnist \
        --epochs 1 --data-dir DIR --out DIR

Writes OUT/config.json, OUT/metrics.jsonl (one line per epoch: training metrics and the same
evaluation a tuning trial gets: FID, KID, the collapse verdict), OUT/samples/*.png and
OUT/checkpoint.pt (latest; `--resume` continues from it exactly). An OUT that already holds a run
is refused unless `--resume` continues it (with the same flags; only --epochs may grow) or
`--overwrite` replaces it: two configurations never share one metrics.jsonl.
"""

import json
import os
import pickle
import re
import shlex
import shutil
from pathlib import Path

import torch

from models.config import LR_DECAYS, OPTIMIZERS, GANConfig, VAEConfig
from models.data import DATA_DIR_ENV, DATASETS, from_gan_range, load_dataset
from models.errors import ArgumentParser, UserInputError, exit_on_user_error, require_non_negative, require_writable
from models.evaluation import evaluator_for
from models.evaluation.features import FEATURE_DIM
from models.gan_trainer import GANTrainer
from models.grids import save_grid, save_points, save_vae_grids
from models.losses import LOSSES, specific_params
from models.nets import ARCHS, D_NORMS
from models.vae_trainer import VAETrainer

DEFAULT_EVAL_SAMPLES = 2000  # as a tuning trial's default
HISTORY_KEYS = ("d_loss", "g_loss", "loss", "diverged")  # the training history the collapse detector reads
ALWAYS_IN_COMMAND = ("model", "dataset")
RUN_FILES = ("checkpoint.pt", "config.json", "metrics.jsonl", "samples")  # what a run writes into --out
RUN_KEYS = ("model", "dataset", "limit", "image_size")  # config.json's run settings beside the config


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
    vae.add_argument("--dropout", type=float, help="dropout rate of the regularized VAE; only with --regularized "
                     f"(default: {VAEConfig.dropout})")

    run = p.add_argument_group("run")
    run.add_argument("--width", type=int, help="base channel width (default: 64 GAN, 32 VAE)")
    run.add_argument("--batch-size", type=int, help="batch size (default: 64 GAN, 128 VAE)")
    run.add_argument("--epochs", type=int, default=10, help="epochs (default: 10)")
    run.add_argument("--seed", type=int, default=0, help="random seed; same seed, same run (default: 0)")
    run.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    run.add_argument("--out", default="runs/train", help="output directory (default: runs/train)")
    run.add_argument("--resume", action="store_true",
                     help="continue from OUT/checkpoint.pt, with the run's flags (only --epochs may grow)")
    run.add_argument("--overwrite", action="store_true", help="replace the run already in OUT")
    run.add_argument("--eval-samples", type=int,
                     help=f"generated samples evaluated each epoch as in a tuning trial (images: FID, KID, the "
                     "collapse verdict; 2-D toy sets: modes covered, high-quality share, sliced Wasserstein, the "
                     f"verdict); 0 skips (default: {DEFAULT_EVAL_SAMPLES})")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(args):
    if args.dropout is not None and not (args.model == "vae" and args.regularized):
        raise UserInputError("dropout: only the regularized VAE has dropout; add --model vae --regularized or leave "
                             "--dropout out")
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
        if key == "dropout" and not values.get("regularized"):  # the flag is refused without --regularized
            continue
        flag = "--" + key.replace("_", "-")
        is_switch = isinstance(flag_defaults[key], bool)  # a store_true flag: present or absent
        words += [flag] if is_switch else [flag, str(value)]
    return shlex.join(words)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not re.fullmatch(r"cuda(:\d+)?", name):
        raise UserInputError(f"device: {name!r} is not one of auto, cpu, cuda, cuda:N")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserInputError(f"device: {name} requested but CUDA is not available; use cpu or auto")
        index, count = int(name.partition(":")[2] or 0), torch.cuda.device_count()
        if index >= count:
            raise UserInputError(f"device: {name} requested but this machine has {count} CUDA device(s)")
    return torch.device(name)


def run_settings(args, config) -> dict:
    """What config.json records: the run's data settings and the trainer's config."""
    return {**{key: getattr(args, key) for key in RUN_KEYS}, **config.to_dict()}


def changed_flags(recorded: dict, now: dict) -> list[str]:
    """The flags whose values differ from the recorded run's, as "--flag NOW (the run has THEN)";
    epochs may grow (that is what resuming is for), any other change would continue other training."""
    changes = []
    for key, then in recorded.items():
        if key not in now or now[key] == then or (key == "epochs" and now[key] > then):
            continue
        flag, rule = "--" + key.replace("_", "-"), "; it may only grow" if key == "epochs" else ""
        given = f"no {flag}" if now[key] is None else f"{flag} {now[key]}"
        changes.append(f"{given} (the run has {then}{rule})")
    return changes


def resume_state(out: Path, settings: dict) -> dict:
    """The checkpoint to resume from (tensors and plain containers only: weights_only), once its
    run is known to match `settings`: a different loss would silently continue the weights as
    another model, a different z_dim fails deep in torch."""
    checkpoint = out / "checkpoint.pt"
    if not checkpoint.is_file():
        raise UserInputError(f"resume: no checkpoint at {checkpoint}")
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        recorded = {**json.loads((out / "config.json").read_text()), **state["config"]}
    except pickle.UnpicklingError:
        raise UserInputError(f"resume: {checkpoint} holds more than tensors and plain containers, or is damaged; "
                             "it is not loaded, as unpickling it could run code") from None
    except FileNotFoundError:
        raise UserInputError(f"resume: no config.json in {out} beside its checkpoint") from None
    except Exception as err:  # torch and json raise many kinds for a damaged file
        raise UserInputError(f"resume: the run in {out} cannot be read ({str(err).splitlines()[0]})") from None
    changes = changed_flags(recorded, settings)
    if changes:
        raise UserInputError(f"resume: {', '.join(changes)}: resume with the run's flags (only --epochs may "
                             "grow), or train into a new --out")
    return state


def check_out(args, settings: dict) -> dict | None:
    """Refuse an --out that cannot take this run before any data is loaded or file written; returns
    the checkpoint state to resume from (None for a new run)."""
    out = Path(args.out)
    if args.resume and args.overwrite:
        raise UserInputError("overwrite: cannot be combined with --resume: resume continues the run in --out, "
                             "overwrite replaces it")
    require_writable("out", out)
    if args.resume:
        return resume_state(out, settings)
    previous = [name for name in RUN_FILES if (out / name).exists()]
    if previous and not args.overwrite:
        raise UserInputError(f"out: {out} already holds a run ({', '.join(previous)}); pass --resume to continue "
                             "it, --overwrite to replace it, or a new --out")
    return None


def clear_run(out: Path) -> None:
    """--overwrite: remove what a previous run wrote (and only that) from `out`."""
    for name in RUN_FILES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def save_checkpoint(state: dict, path: Path) -> None:
    """Atomic: a crash mid-write leaves the previous checkpoint intact."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_evaluator(args, train, device, n: int):
    """The evaluator a tuning trial on this dataset gets: the image Evaluator, or a 2-D toy set's
    ToyEvaluator (modes covered, high-quality share, sliced Wasserstein, the same verdict)."""
    evaluator = evaluator_for(args.dataset, args.data_dir, n_samples=n, image_size=args.image_size,
                              idx_images=args.idx_images, idx_labels=args.idx_labels).to(device)
    if train.is_image and evaluator.image_shape != train.shape:
        raise UserInputError(f"eval_samples: {args.dataset}'s evaluator scores {evaluator.image_shape} images, "
                             f"this run makes {train.shape} ones; pass --eval-samples 0")
    return evaluator


def evaluate(trainer, evaluator, n: int, history: list, gan_images: bool) -> dict:
    """The evaluation fields of a trial's report: fid, fid_floor, kid (images), the collapse verdict
    and its signals. A GAN's images are mapped from [-1, 1]; a toy GAN's points are scored as drawn."""
    samples = trainer.sample(n)
    evaluation = evaluator.evaluate(from_gan_range(samples) if gan_images else samples, history=history[-5:])
    return {**evaluation, "reasons": "; ".join(evaluation["reasons"])}


def read_history(metrics_file: Path) -> list[dict]:
    """The training history of the epochs already logged, for the collapse detector after --resume."""
    lines = metrics_file.read_text().splitlines() if metrics_file.is_file() else []
    history = []
    for number, line in enumerate(lines, 1):
        try:
            metrics = json.loads(line)
        except json.JSONDecodeError:
            raise UserInputError(f"resume: {metrics_file} line {number} is not JSON; fix or remove that line") from None
        history.append({k: metrics[k] for k in HISTORY_KEYS if k in metrics})
    return history


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    device = resolve_device(args.device)
    for name in ("image_size", "limit"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            raise UserInputError(f"{name}: must be > 0, got {getattr(args, name)}")
    if args.eval_samples is not None:
        require_non_negative("eval_samples", args.eval_samples)
        if 0 < args.eval_samples < FEATURE_DIM:
            raise UserInputError(f"eval_samples: must be 0 (no evaluation) or at least {FEATURE_DIM}, the feature "
                                 f"dimension FID needs, got {args.eval_samples}")
    settings = run_settings(args, config)
    state = check_out(args, settings)
    data_kw = dict(data_dir=args.data_dir, image_size=args.image_size, download=not args.no_download,
                   idx_images=args.idx_images, idx_labels=args.idx_labels, seed=args.seed)
    train = load_dataset(args.dataset, train=True, **data_kw)
    if args.limit:
        train = train.subset(args.limit, seed=args.seed)
    trainer = (GANTrainer if args.model == "gan" else VAETrainer)(config, train, device)
    eval_samples = DEFAULT_EVAL_SAMPLES if args.eval_samples is None else args.eval_samples
    evaluator = load_evaluator(args, train, device, eval_samples) if eval_samples else None
    test = None if args.model == "gan" else load_dataset(args.dataset, train=False, **data_kw)

    out = Path(args.out)
    history = []
    if state is not None:
        trainer.load_state_dict(state)
        history = read_history(out / "metrics.jsonl")
    try:
        if args.overwrite:
            clear_run(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(settings, indent=2))
        train_epochs(args, trainer, train, test, evaluator, eval_samples, history, device)
    except OSError as err:  # a full disk, a mount gone mid-run
        raise UserInputError(f"out: cannot write to {out} ({err.strerror or err})") from None


def train_epochs(args, trainer, train, test, evaluator, eval_samples: int, history: list, device) -> None:
    """Train to --epochs, writing each epoch's metrics line, sample grids and checkpoint into --out."""
    out, config = Path(args.out), trainer.config
    checkpoint, metrics_file = out / "checkpoint.pt", out / "metrics.jsonl"
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
                evaluation = evaluate(trainer, evaluator, eval_samples, history, args.model == "gan" and train.is_image)
                metrics.update(evaluation, diverged=metrics["diverged"] or evaluation["diverged"])
            log.write(json.dumps(metrics) + "\n")
            log.flush()
            save_checkpoint(trainer.state_dict(), checkpoint)
            print(f"epoch {epoch}/{config.epochs} " + " ".join(
                f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)), flush=True)
            if metrics["diverged"]:
                print(f"stopped: non-finite losses or images at epoch {epoch} (diverged)")
                break


def cli() -> None:
    """The command line (python -m models.train, gantune-train): bad input is one line and exit status 2."""
    exit_on_user_error(main)


if __name__ == "__main__":
    cli()
