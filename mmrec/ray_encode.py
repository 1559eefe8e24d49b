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

import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mmrec.errors import ConfigError

if TYPE_CHECKING:
    from mmrec.catalog import Item
    from mmrec.encoding import EncodedChunk, _Run
    from mmrec.enums import Modality

MAX_DEFAULT_CPU_WORKERS = 8  # each actor holds a model copy: bound memory on big boxes


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray, which is not installed",
                          hint="pip install 'mmrec[ray]'") from None
    return ray


class _Worker:
    """A Ray actor: the run's encoders, each loaded once, encoding the chunks it is handed.

    One actor serves every modality of the run, so a worker process (and its torch
    import) starts once, not once per modality."""

    def __init__(self, device: str, batch_size: int | None) -> None:
        self.device, self.batch_size = device, batch_size
        self.encoders: dict[str, Any] = {}

    def _encoder(self, name: str, modality: Modality) -> Any:
        from mmrec.encoders.registry import create
        from mmrec.runtime import resolve_device

        if name not in self.encoders:
            encoder = create(name, modality)
            encoder.load(resolve_device(self.device))
            self.encoders[name] = encoder
        return self.encoders[name]

    def encode(self, name: str, modality: str, chunk: list[tuple[Item, str]]) -> EncodedChunk:
        from mmrec.encoding import _decode, encode_decoded
        from mmrec.enums import Modality

        encoder = self._encoder(name, Modality(modality))
        return encode_decoded(encoder, _decode(chunk, encoder.modality, encoder), self.batch_size)


@dataclass
class RayRunner:
    """The Ray side of one encode run; the cluster is joined only when work appears."""

    workers: int | None = None
    address: str | None = None
    device: str = "auto"
    started: bool = field(default=False, init=False)  # True: this run connected to Ray
    joined: bool = field(default=False, init=False)
    pool: list[Any] = field(default_factory=list, init=False)  # actor handles
    label: str = field(default="-", init=False)

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
            self.started = True  # shutdown stops a local cluster, leaves a joined one running
        self.joined = True
        return ray

    def close(self) -> None:
        if self.pool:
            ray = _ray()
            for handle in self.pool:
                ray.kill(handle)
            self.pool = []
        if self.started:
            _ray().shutdown()
            self.started = False

    def _actors(self, ray: Any, batch_size: int | None) -> list[Any]:
        if not self.pool:
            count, gpus = self._shape(ray)
            actor = ray.remote(num_cpus=1, num_gpus=gpus)(_Worker)
            device = "cuda" if gpus else self.device
            self.pool = [actor.remote(device, batch_size) for _ in range(count)]
            self.label = f"ray {count}x {device}"
        return self.pool

    def encode(self, run: _Run, modality: Modality, name: str,
               todo: list[tuple[Item, str]]) -> str:
        """Encode ``todo`` on the pool, recording each chunk in ``run``; the device label."""
        ray = self._join()
        pool = self._actors(ray, run.batch_size)
        try:
            self._run_pool(pool, run, modality, name, todo)
        except ray.exceptions.RayTaskError as exc:  # the worker's own exception, as raised
            raise (exc.cause or exc) from None
        except ray.exceptions.RayActorError as exc:
            from mmrec.distributed import DistributedError

            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DistributedError(f"a Ray worker died: {first[:200]}",
                                   hint="see the Ray logs of the cluster") from None
        return self.label

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

    def _run_pool(self, pool: list[Any], run: _Run, modality: Modality, name: str,
                  todo: list[tuple[Item, str]]) -> None:
        from ray.util import ActorPool

        advance = run.progress.task(f"{modality.value:5} {name} (ray x{len(pool)})", len(todo))
        # at least two chunks per actor, so a slow chunk does not leave the others idle
        size = max(1, min(run.chunk_size, math.ceil(len(todo) / (2 * len(pool)))))
        chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
        run.encoded[modality.value] = 0
        work = ActorPool(pool).map_unordered(
            lambda actor, chunk: actor.encode.remote(name, modality.value, chunk), chunks)
        for done in work:  # every finished chunk is journaled at once: a kill loses only
            run.record(modality, name, done)  # the chunks still in flight
            advance(len(done.bad) + len(done.ready))
