"""``mmrec encode --engine ray``: the catalog's chunks encoded by a pool of Ray actors.

Each actor loads one encoder once (on its own GPU where the cluster has GPUs) and turns
chunks of (item, hash) pairs into vectors with the same code a local run uses
(:func:`mmrec.encoding.encode_decoded`); the driver records every finished chunk in the
store's journal and publishes the store exactly as a local run does, so incremental
re-runs, resume after a kill and the bad-row report are unchanged. Workers read the
catalog's media files by path: on a multi-node cluster they must see the same files.

The cluster is ``--ray-address`` (or ``RAY_ADDRESS``), one already initialised in this
process, or a local one started on first use and stopped when the run ends.
"""
from __future__ import annotations

import enum
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mmrec.errors import ConfigError

if TYPE_CHECKING:
    from mmrec.catalog import Item
    from mmrec.encoders.base import Modality
    from mmrec.encoding import EncodedChunk, _Run

MAX_DEFAULT_CPU_WORKERS = 8  # each actor holds a model copy: bound memory on big boxes


class Engine(str, enum.Enum):
    LOCAL = "local"
    RAY = "ray"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray, which is not installed",
                          hint="pip install 'mmrec[ray]'") from None
    return ray


class _Worker:
    """A Ray actor: one loaded encoder, encoding the chunks it is handed."""

    def __init__(self, name: str, modality: str, device: str, batch_size: int | None) -> None:
        from mmrec.encoders.base import Modality
        from mmrec.encoders.registry import create
        from mmrec.runtime import resolve_device

        self.modality, self.batch_size, self.error = Modality(modality), batch_size, None
        try:
            self.encoder = create(name, self.modality)
            self.encoder.load(resolve_device(device))
        except Exception as exc:  # Ray reports a failed __init__ without its exception:
            self.error = exc  # raised from the first task instead, it reaches the driver

    def encode(self, chunk: list[tuple[Item, str]]) -> EncodedChunk:
        from mmrec.encoding import _decode, encode_decoded

        if self.error is not None:
            raise self.error
        return encode_decoded(self.encoder, _decode(chunk, self.modality, self.encoder),
                              self.batch_size)


@dataclass
class RayRunner:
    """The Ray side of one encode run; the cluster is joined only when work appears."""

    workers: int | None = None
    address: str | None = None
    device: str = "auto"
    started: bool = field(default=False, init=False)  # True: this run owns the cluster
    joined: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")

    def _join(self) -> Any:
        ray = _ray()
        if not self.joined and not ray.is_initialized():
            import logging

            address = self.address or os.environ.get("RAY_ADDRESS") or None
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False,
                     include_dashboard=False)
            self.started = address is None
        self.joined = True
        return ray

    def close(self) -> None:
        if self.started:
            _ray().shutdown()
            self.started = False

    def encode(self, run: _Run, modality: Modality, name: str,
               todo: list[tuple[Item, str]]) -> str:
        """Encode ``todo`` on the pool, recording each chunk in ``run``; the device label."""
        ray = self._join()
        count, gpus = self._shape(ray)
        actor = ray.remote(num_cpus=1, num_gpus=gpus)(_Worker)
        device = "cuda" if gpus else self.device
        pool = [actor.remote(name, modality.value, device, run.batch_size) for _ in range(count)]
        try:
            self._run_pool(ray, pool, run, modality, name, todo)
        except ray.exceptions.RayTaskError as exc:  # the worker's own exception, as raised
            raise (exc.cause or exc) from None
        except ray.exceptions.RayActorError as exc:
            from mmrec.distributed import DistributedError

            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DistributedError(f"a Ray worker died: {first[:200]}",
                                   hint="see the Ray logs of the cluster") from None
        finally:
            for handle in pool:
                ray.kill(handle)
        return f"ray {count}x {'cuda' if gpus else device}"

    def _shape(self, ray: Any) -> tuple[int, int]:
        """(actors, GPUs per actor): one GPU each where the cluster has GPUs."""
        have = ray.cluster_resources()
        gpus = int(have.get("GPU", 0)) if self.device in ("auto", "cuda") else 0
        cpus = int(have.get("CPU", 1))
        count = self.workers or (gpus or min(cpus, MAX_DEFAULT_CPU_WORKERS))
        if (gpus and count > gpus) or count > cpus:
            raise ConfigError(f"--workers {count}: the Ray cluster has {cpus} CPUs and "
                              f"{gpus} GPUs, the pool would wait for ever",
                              hint="lower --workers, or add nodes to the cluster")
        return count, 1 if gpus else 0

    def _run_pool(self, ray: Any, pool: list[Any], run: _Run, modality: Modality, name: str,
                  todo: list[tuple[Item, str]]) -> None:
        from ray.util import ActorPool

        advance = run.progress.task(f"{modality.value:5} {name} (ray x{len(pool)})", len(todo))
        # at least two chunks per actor, so a slow chunk does not leave the others idle
        size = max(1, min(run.chunk_size, math.ceil(len(todo) / (2 * len(pool)))))
        chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
        run.encoded[modality.value] = 0
        work = ActorPool(pool).map_unordered(lambda a, chunk: a.encode.remote(chunk), chunks)
        for done in work:  # every finished chunk is journaled at once: a kill loses only
            run.record(modality, name, done)  # the chunks still in flight
            advance(len(done.bad) + len(done.ready))
