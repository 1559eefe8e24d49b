"""Data-parallel training under ``torchrun``: one process per device, torch.distributed.

Launched by ``torchrun --nproc_per_node N -m mmrec align|train ...``, every process
reads the same data and draws the same seeded global batches; each takes its own
contiguous shard of every batch, computes its rows' embeddings, and all-gathers them
*with gradients* (torch.distributed.nn), so every rank evaluates the InfoNCE loss of the
whole global batch with all of its negatives: the loss is the one-process loss. DDP
averages the gradients; rank 0 validates (the others receive its score, so every
rank stops at the same step) and writes the artifact while the others wait.

Without torchrun's environment (``WORLD_SIZE`` unset or 1) every helper here is the
identity, so the one-process path runs exactly as before.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from mmrec.errors import MMRecError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")
TIMEOUT_ENV = "MMREC_DIST_TIMEOUT"  # seconds a rank waits for the others before giving up
DEFAULT_TIMEOUT = 300


class DistributedError(MMRecError):
    """Another rank stopped or could not be reached: the run cannot go on."""

    hint = "the first error printed by any rank says why"


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """This process's place, from torchrun's environment variables."""
    try:
        return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                     int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError as exc:
        raise DistributedError(f"bad torchrun environment ({exc})") from None


def active() -> bool:
    """True once the process group of a multi-process run is up."""
    import torch.distributed as dist

    return world().size > 1 and dist.is_available() and dist.is_initialized()


def setup(choice: Any = "auto") -> torch.device:
    """The device for this rank; under torchrun, also joins the process group
    (gloo on CPU, nccl on CUDA, each rank on the GPU of its ``LOCAL_RANK``)."""
    import torch

    from mmrec.runtime import resolve_device

    device, here = resolve_device(choice), world()
    if here.size <= 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", here.local_rank)
        from mmrec.runtime import use_device

        use_device(device)
    if not active():
        _init_group(device, here)
    return device


def _init_group(device: torch.device, here: World) -> None:
    import datetime

    import torch.distributed as dist

    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT)))
    with translated("joining the other ranks"):
        dist.init_process_group(backend, rank=here.rank, world_size=here.size, timeout=timeout)
    atexit.register(_teardown)


def _teardown() -> None:
    import gc

    import torch.distributed as dist

    gc.collect()  # DDP reducers still alive when their group goes abort the process
    if dist.is_initialized():
        with contextlib.suppress(Exception):  # a peer already gone: nothing left to close
            dist.destroy_process_group()


@contextlib.contextmanager
def translated(doing: str) -> Iterator[None]:
    """Turn a collective's failure (a peer died, a timeout) into one DistributedError."""
    try:
        yield
    except MMRecError:
        raise
    except RuntimeError as exc:  # torch's DistBackendError and gloo's errors are RuntimeErrors
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DistributedError(f"rank {world().rank}: {doing} failed: another rank stopped "
                               f"or timed out ({first[:160]})") from None


def shard(n: int) -> slice:
    """This rank's contiguous rows of a global batch of ``n`` (sizes differ by one at most)."""
    here = world() if active() else World()
    sizes = shard_sizes(n, here.size)
    start = sum(sizes[: here.rank])
    return slice(start, start + sizes[here.rank])


def shard_sizes(n: int, size: int) -> list[int]:
    return [n // size + (1 if r < n % size else 0) for r in range(size)]


def gather_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """Every rank's shard of an ``n``-row batch, in batch order, with gradients flowing
    back to each rank's own rows (torch.distributed.nn's all_gather)."""
    if not active():
        return local
    import torch
    from torch.distributed.nn.functional import all_gather

    sizes = shard_sizes(n, world().size)
    pad = max(sizes) - len(local)  # all_gather needs equal shapes: pad, then cut
    if pad:
        local = torch.cat([local, local.new_zeros((pad, *local.shape[1:]))])
    with translated("gathering embeddings"), warnings.catch_warnings():
        # deprecated for _functional_collectives, whose gloo path lacks reduce_scatter
        warnings.simplefilter("ignore", FutureWarning)
        parts = all_gather(local)
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])


def data_parallel(net: torch.nn.Module, loss: Callable[..., torch.Tensor],
                  device: torch.device, sometimes_unused: bool = False
                  ) -> Callable[..., torch.Tensor]:
    """``loss`` computed through DDP, so backward averages ``net``'s gradients over
    ranks. The loss runs inside DDP's forward: parameters it uses outside the
    network's own forward (the temperature) are then synchronised too.
    ``sometimes_unused``: some parameters get no gradient in some steps (DDP must look)."""
    if not active():
        return loss
    from torch.nn.parallel import DistributedDataParallel

    module = DistributedDataParallel(
        _LossModule(net, loss), device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=sometimes_unused)

    def step(*args: Any) -> torch.Tensor:
        with translated("a data-parallel step"):
            return module(*args)

    return step


def _LossModule(net: torch.nn.Module, loss: Callable[..., torch.Tensor]) -> torch.nn.Module:
    from torch import nn

    class LossModule(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, *args: Any) -> torch.Tensor:
            return loss(*args)

    return LossModule()


def from_main(compute: Callable[[], T]) -> T:
    """``compute()`` on rank 0 only; every rank returns rank 0's value."""
    if not active():
        return compute()
    import torch.distributed as dist

    box = [compute() if world().main else None]
    with translated("waiting for rank 0"):
        dist.broadcast_object_list(box, src=0, device=_object_device())
    return box[0]


def _object_device() -> Any:
    """Where broadcast_object_list stages its bytes: nccl needs the rank's GPU."""
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", world().local_rank)
    return None


def barrier() -> None:
    if active():
        import torch.distributed as dist

        with translated("waiting for the other ranks"):
            dist.barrier()


def is_main() -> bool:
    return world().main if active() else True
