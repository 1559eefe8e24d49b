"""The one place for device, precision, seeds and threads.

Nothing else in mmrec calls ``torch.cuda`` or ``torch.backends.mps``.
"""
from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING

from mmrec.enums import DeviceChoice, Precision
from mmrec.errors import DeviceError

if TYPE_CHECKING:
    import torch


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(choice: DeviceChoice | str = DeviceChoice.AUTO) -> torch.device:
    """``auto`` probes cuda, then mps, then cpu; an explicit choice must be available."""
    import torch

    choice = DeviceChoice(choice)
    if choice is DeviceChoice.AUTO:
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if choice is DeviceChoice.CUDA and not torch.cuda.is_available():
        raise DeviceError("--device cuda asked for, but no CUDA GPU is visible",
                          hint="use --device auto or --device cpu")
    if choice is DeviceChoice.MPS and not _mps_available():
        raise DeviceError("--device mps asked for, but Apple MPS is not available",
                          hint="use --device auto or --device cpu")
    return torch.device(choice.value)


def autocast_dtype(device: torch.device, precision: Precision | str = Precision.AUTO):
    """The dtype to autocast to on ``device``, or None for plain fp32."""
    import torch

    precision = Precision(precision)
    if precision is Precision.FP32:
        return None
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if precision is Precision.BF16:
        if device.type == "cpu":
            return torch.bfloat16
        raise DeviceError(f"bf16 is not supported on {device}", hint="use --precision fp32")
    return None


@contextlib.contextmanager
def autocast(device: torch.device, precision: Precision | str = Precision.AUTO) -> Iterator[None]:
    import torch

    dtype = autocast_dtype(device, precision)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) for a reproducible run."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(threads: int | None) -> None:
    if threads is None:
        return
    if threads < 1:
        from mmrec.errors import ConfigError

        raise ConfigError(f"--threads must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so timings measure the work and not its launch."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def use_device(device: torch.device) -> None:
    """Make ``device`` this process's current GPU (one rank per GPU under torchrun)."""
    import torch

    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)


@contextlib.contextmanager
def one_cpu_thread(device: torch.device) -> Iterator[None]:
    """One CPU thread for training loops of small matmuls (projection heads, the two
    towers): they gain nothing from more, on a busy machine OpenMP's spin-waits cost
    20x (an align step 0.31 s with 2 threads against 0.014 s with 1, measured on 2 shared
    cores), and multi-threaded reductions made the same seeded demo training stop at
    epoch 89 or 136 from run to run; with one thread it is the same every run."""
    import torch

    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
