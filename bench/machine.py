"""What a benchmark ran on, recorded in every JSON the bench/ scripts write."""

import os
import platform
from pathlib import Path

import optuna
import ray
import torch


def cpu_name() -> str:
    if Path("/proc/cpuinfo").exists():
        with open("/proc/cpuinfo") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        if names:
            return names[0]
    return platform.processor()


def machine_info() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu_name(),
            "cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "ray": ray.__version__, "optuna": optuna.__version__,
            "cuda_available": torch.cuda.is_available(),
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
