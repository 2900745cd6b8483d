"""python -m tuner.sample EXPERIMENT [--trial ID] [--n 64] [--out grid.png] [--npz N [--npz-out PATH]]:
samples of a search's best generator (or of any trial's) as a PNG grid and, optionally, a numpy array."""

import math
import sys
from pathlib import Path

from models.errors import ArgumentParser, UserInputError, exit_on_user_error, require_positive


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m tuner.sample",
                       description="Sample the best generator a search kept: the trial tuner.analysis ranks first "
                                   "(healthy first, then by best FID), or --trial. Each trial keeps the generator "
                                   "of its best evaluation by objective (the EMA generator when EMA is on) in "
                                   "best_generator.pt in its latest checkpoint.")
    p.add_argument("experiment_dir", help="the experiment directory: STORAGE_PATH/NAME, relative or absolute")
    p.add_argument("--trial", help="a trial id (as in the report's ranking) instead of the best trial")
    p.add_argument("--n", type=int, default=64, help="images in the grid (default: 64; a square grid for 64, 100, ...)")
    p.add_argument("--out", default="samples.png", help="the PNG grid to write (default: samples.png)")
    p.add_argument("--npz", type=int, metavar="N",
                   help="also write N samples as a numpy .npz file: key 'samples', float32, N x C x H x W, in [0, 1]")
    p.add_argument("--npz-out", help="where --npz writes (default: samples.npz beside --out)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the latent codes; the same seed gives the same images, and the grid's images "
                        "are the first of the npz's (default: 0)")
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    require_positive("n", args.n)
    if args.npz is not None:
        require_positive("npz", args.npz)
    if args.npz_out and args.npz is None:
        raise UserInputError("npz-out: given without --npz N (how many samples to write)")
    import numpy as np

    from models.grids import save_grid
    from tuner.handover import load_generator, sample
    generator, _, meta = load_generator(args.experiment_dir, args.trial)
    if meta["value_range"] is None:
        raise UserInputError(f"trial: {meta['trial_id']} generates points of shape {tuple(meta['data_shape'])}, "
                             "not images; there is no grid to draw")
    trial = f"trial {meta['trial_id']} (rank {meta['rank']}, {meta['health']})"
    if meta["health"] != "healthy":
        print(f"warning: {trial} is not healthy; its samples may be poor", file=sys.stderr)
    out = save_grid(sample(generator, meta, args.n, args.seed), args.out, nrow=math.ceil(math.sqrt(args.n)))
    print(f"wrote {out}: {args.n} samples of {trial}, kept at epoch {meta['epoch']:g} "
          f"(objective {meta['objective']:.4g}) from {meta['path']}")
    if args.npz:
        npz_out = Path(args.npz_out) if args.npz_out else out.parent / "samples.npz"
        npz_out.parent.mkdir(parents=True, exist_ok=True)
        samples = sample(generator, meta, args.npz, args.seed).numpy().astype(np.float32)
        with open(npz_out, "wb") as file:  # np.savez would append .npz to any other name
            np.savez(file, samples=samples)
        print(f"wrote {npz_out}: samples {samples.shape} float32 in [0, 1]")


def cli() -> None:
    """The command line (python -m tuner.sample, gantune-sample): bad input is one line and exit status 2."""
    exit_on_user_error(main)


if __name__ == "__main__":
    cli()
