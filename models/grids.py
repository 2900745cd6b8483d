"""Sample grids as PNG files: GAN fixed-noise samples, VAE reconstructions, samples, interpolations."""

from pathlib import Path

import torch


def save_grid(images: torch.Tensor, path, nrow: int = 8) -> Path:
    """Images in [0, 1], N x C x H x W, as one PNG grid. torchvision is imported here, not above:
    it costs every CLI about 2 s at start (it pulls in torch._dynamo), before its flags are read."""
    from torchvision.utils import make_grid, save_image
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(images.detach().float().cpu().clamp(0, 1), nrow=nrow, padding=2), path)
    return path


def save_points(points: torch.Tensor, real: torch.Tensor, path) -> Path:
    """Toy 2-D sets: generated points over the real ones, as a scatter plot."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(*real[:2000].cpu().T, s=2, alpha=0.3, label="real")
    ax.scatter(*points.detach().cpu().T, s=2, alpha=0.6, label="generated")
    ax.set_aspect("equal")
    ax.legend(loc="upper right")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def save_vae_grids(trainer, test_images: torch.Tensor, out_dir, tag: str) -> list[Path]:
    """Originals above their reconstructions, random prior samples, and one interpolation row per pair."""
    out_dir = Path(out_dir)
    originals = test_images[:8]
    pairs = [(test_images[2 * i], test_images[2 * i + 1]) for i in range(8, 12)]
    interpolations = torch.cat([trainer.interpolate(a, b, steps=10).cpu() for a, b in pairs])
    return [
        save_grid(torch.cat([originals, trainer.reconstruct(originals).cpu()]), out_dir / f"reconstructions_{tag}.png"),
        save_grid(trainer.sample(), out_dir / f"samples_{tag}.png"),
        save_grid(interpolations, out_dir / f"interpolations_{tag}.png", nrow=10),
    ]
