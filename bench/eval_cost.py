"""Cost of Evaluator.evaluate() relative to one DCGAN training epoch on Fashion-MNIST.

The evaluator runs once per reported epoch in every trial, so its cost must stay a small
fraction (target <= 5%, issue 14) of the epoch it reports on. The epoch is timed over a fixed
number of steps after warm-up and extrapolated to the full epoch; the JSON says so. The k-NN
statistics (precision, recall, density, coverage, duplicates, memorisation: one pass of the
generated features over every training image's) are also timed alone, inside the evaluation.
"""

import json
import statistics
import time
from pathlib import Path

import torch

import harness  # bench/harness.py, beside this script
from models.config import GANConfig
from models.data import from_gan_range, load_dataset
from models.evaluation import Evaluator
from models.gan_trainer import GANTrainer


def parse_args(argv=None):
    parser = harness.parser(__doc__)
    parser.add_argument("--device", default="cpu", help="torch device for training and evaluation (default: cpu)")
    parser.add_argument("--samples", type=int, default=2000, help="generated images per evaluate() call (default: 2000)")
    parser.add_argument("--cache-dir", default=None,
                        help="feature-net cache (default: $GANTUNE_CACHE_DIR or ~/.cache/gantune)")
    parser.add_argument("--train-steps", type=int, default=100,
                        help="timed training steps, extrapolated to a full epoch (default: 100)")
    parser.add_argument("--eval-runs", type=int, default=5, help="timed evaluate() calls after one warm-up (default: 5)")
    parser.add_argument("--out", type=Path, default=harness.RESULTS / "eval_cost.json",
                        help="output JSON path (default: bench/results/eval_cost.json)")
    return parser.parse_args(argv)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    report = harness.Report(args)
    train = load_dataset("fashion_mnist", args.data_dir, train=True, download=False)
    evaluator = Evaluator.for_dataset("fashion_mnist", args.data_dir, args.cache_dir, device, args.samples)

    config = GANConfig(batch_size=64)
    trainer = GANTrainer(config, train, device)
    trainer.train_steps(10)  # warm-up: allocator, kernels, first BatchNorm statistics
    sync(device)
    started = time.perf_counter()
    trainer.train_steps(args.train_steps)
    sync(device)
    step_seconds = (time.perf_counter() - started) / args.train_steps
    steps_per_epoch = len(trainer.batches)
    epoch_seconds = step_seconds * steps_per_epoch

    images = from_gan_range(trainer.sample(args.samples)).clamp(0, 1).cpu()
    evaluator.evaluate(images)  # warm-up
    eval_times = []
    for _ in range(args.eval_runs):
        started = time.perf_counter()
        evaluator.evaluate(images)
        eval_times.append(time.perf_counter() - started)
    eval_seconds = statistics.median(eval_times)
    features = evaluator.net.features_and_probs(images.to(device))[0].numpy()
    knn_times = []
    for _ in range(args.eval_runs):
        started = time.perf_counter()
        evaluator.feature_space_signals(features)
        knn_times.append(time.perf_counter() - started)

    report.update({
        "device": str(device), "torch_threads": torch.get_num_threads(), "samples": args.samples,
        "evaluate_seconds_median": eval_seconds, "evaluate_seconds_all": eval_times,
        "knn_seconds_median": statistics.median(knn_times), "knn_reference_images": len(evaluator.train_features),
        "epoch_seconds": epoch_seconds, "epoch_is_extrapolated": True,
        "epoch_method": f"{args.train_steps} timed steps after 10 warm-up steps, x {steps_per_epoch} steps/epoch",
        "train_step_seconds": step_seconds, "gan_config": config.to_dict(),
        "evaluate_to_epoch_ratio": eval_seconds / epoch_seconds,
    })
    report.write(args.out)
    print(json.dumps({k: report[k] for k in ("evaluate_seconds_median", "knn_seconds_median", "epoch_seconds",
                                             "evaluate_to_epoch_ratio")}))
    return report


if __name__ == "__main__":
    main()
