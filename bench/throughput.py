"""GAN training throughput: device-resident batches (GANTrainer) against a seed-style DataLoader loop.

Both arms train the same models (build_gan), losses and batch size on Fashion-MNIST with bce loss
and one D step + one G step per batch. The arms alternate over several rounds in one process, so
load from other jobs hits both alike. The JSON reports each arm's median images/s and, as the ratio,
the median over rounds of (device-resident / baseline) within the round: many short rounds make
that robust to other jobs' bursts, which can change throughput tenfold within a minute on a small box.

    python bench/throughput.py --data-dir /work/shared/datasets            # CPU here
    python bench/throughput.py --device cuda                               # on a GPU machine
"""

import statistics
import time
from pathlib import Path

import torch
from torchvision import datasets, transforms

import harness  # bench/harness.py, beside this script
from models.config import GANConfig
from models.data import load_dataset, resolve_data_dir
from models.gan_trainer import GANTrainer
from models.losses import d_bce, g_bce
from models.nets import build_gan

TARGETS = {"cpu": {"dcgan": 1.3, "mlp": 1.6}, "cuda": {"dcgan": 3.0, "mlp": 3.0}}
AUTO_STEPS = {"cpu": {"dcgan": 25, "mlp": 100}, "cuda": {"dcgan": 300, "mlp": 500}}


class SeedLoop:
    """The loop a student lab writes: DataLoader + Normalize, .to(device) and .item() every step."""

    def __init__(self, config: GANConfig, data_dir: Path, device: torch.device, num_workers: int):
        tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
        ds = datasets.FashionMNIST(str(data_dir), train=True, download=False, transform=tf)
        loader = torch.utils.data.DataLoader(ds, batch_size=config.batch_size, shuffle=True, drop_last=True,
                                             num_workers=num_workers, pin_memory=device.type == "cuda")
        self.batches = (x for _ in iter(int, 1) for x, _ in loader)  # endless; workers restart each epoch
        self.config, self.device = config, device
        torch.manual_seed(config.seed)
        self.G, self.D = build_gan(config.arch, config.z_dim, (1, 28, 28), config.width)
        self.G.to(device)
        self.D.to(device)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=config.lr_g, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=config.lr_d, betas=(0.5, 0.999))

    def train_steps(self, steps: int) -> None:
        c = self.config
        for _ in range(steps):
            real = next(self.batches).to(self.device)
            with torch.no_grad():  # same forward passes as GANTrainer: fresh noise for each step
                fake = self.G(torch.randn(c.batch_size, c.z_dim, device=self.device))
            d_loss = d_bce(self.D(real), self.D(fake), {"real_label": 1.0})
            self.opt_d.zero_grad()
            d_loss.backward()
            self.opt_d.step()
            g_loss = g_bce(self.D(self.G(torch.randn(c.batch_size, c.z_dim, device=self.device))))
            self.opt_g.zero_grad()
            g_loss.backward()
            self.opt_g.step()
            d_loss.item(), g_loss.item()  # the per-step host sync of a logging loop


def timed(device: torch.device, fn, steps: int, batch_size: int) -> float:
    """images/s of fn(steps), wall clock, with the device drained at both ends."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    fn(steps)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - started)


def bench_arch(arch: str, args, device: torch.device) -> dict:
    config = GANConfig(loss="bce", arch=arch, batch_size=args.batch_size)
    steps = args.steps or AUTO_STEPS[device.type][arch]
    baseline = SeedLoop(config, args.data_dir, device, args.num_workers)
    ours = GANTrainer(config, load_dataset("fashion_mnist", args.data_dir, train=True, download=False), device)
    arms = {"baseline": baseline.train_steps, "device_resident": ours.train_steps}
    for fn in arms.values():  # warm-up: DataLoader workers, allocator, kernels
        timed(device, fn, args.warmup, config.batch_size)
    rounds = {name: [] for name in arms}
    for r in range(args.rounds):
        order = list(arms) if r % 2 == 0 else list(reversed(arms))  # ABBA: cancels slow drift in load
        for name in order:
            rounds[name].append(timed(device, arms[name], steps, config.batch_size))
        print(f"{arch} round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {v[-1]:.0f} img/s" for n, v in rounds.items()),
              flush=True)
    base, dev = statistics.median(rounds["baseline"]), statistics.median(rounds["device_resident"])
    ratio = statistics.median(d / b for b, d in zip(rounds["baseline"], rounds["device_resident"]))
    target = TARGETS[device.type][arch]
    return {"baseline_images_per_s": round(base, 1), "device_resident_images_per_s": round(dev, 1),
            "ratio": round(ratio, 3), "ratio_of_medians": round(dev / base, 3), "target_ratio": target,
            "meets_target": ratio >= target,
            "steps_per_round": steps, "rounds_images_per_s": {n: [round(v, 1) for v in vs] for n, vs in rounds.items()}}


def main(argv=None):
    p = harness.parser(__doc__)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where both arms train; auto = cuda when available, else cpu")
    p.add_argument("--steps", type=int, default=0,
                   help="training steps (batches) per arm per measured round; 0 = per-arch default "
                        f"(cpu {AUTO_STEPS['cpu']}, cuda {AUTO_STEPS['cuda']})")
    p.add_argument("--rounds", type=int, default=15, help="measured rounds per arch, arms alternating (medians reported)")
    p.add_argument("--warmup", type=int, default=10, help="unmeasured steps per arm before the rounds")
    p.add_argument("--archs", nargs="+", default=["dcgan", "mlp"], choices=("dcgan", "mlp"), help="GANs to measure")
    p.add_argument("--batch-size", type=int, default=64, help="batch size of both arms")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader workers of the baseline loop")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0 = torch's default")
    p.add_argument("--out", type=Path, help="JSON file (default: bench/results/throughput_<device type>.json)")
    args = p.parse_args(argv)
    args.data_dir = resolve_data_dir(args.data_dir)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    out = args.out or harness.RESULTS / f"throughput_{device.type}.json"
    report = harness.Report({"device": str(device), "batch_size": args.batch_size, "rounds": args.rounds,
                             "warmup_steps": args.warmup, "ratio": "median over rounds of the in-round ratio",
                             "num_workers": args.num_workers, "loss": "bce", "data_dir": str(args.data_dir),
                             "dataset": "fashion_mnist train (60,000)"})
    report["machine"]["device"] = str(device)
    results = report["results"] = {arch: bench_arch(arch, args, device) for arch in args.archs}
    report.write(out)
    for arch, r in results.items():
        print(f"{arch}: baseline {r['baseline_images_per_s']:.0f} img/s, device-resident "
              f"{r['device_resident_images_per_s']:.0f} img/s, ratio {r['ratio']:.2f} (target {r['target_ratio']})")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
