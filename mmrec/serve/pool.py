"""The served directories, one live handle each, swapped when a directory is republished.

mmrec republishes a directory by renaming a complete new one into place, so a changed
``config.json`` identity means a new aligner or model. The new one is opened in the
background while the old handle keeps answering; requests already holding the old
handle finish on it (its data is loaded, so deleting its files does not disturb it).
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from mmrec.artifacts import Kind
from mmrec.errors import ConfigError, MMRecError, UnknownIdError
from mmrec.handle import AlignerHandle, ModelHandle, stamp_of
from mmrec.handle import open as open_handle

log = logging.getLogger("mmrec.serve")
ARTICLE = {Kind.ALIGNER: "an aligner", Kind.MODEL: "a model"}


class Live:
    """One directory's current handle."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.handle: AlignerHandle | ModelHandle = open_handle(self.path, warm=True)
        self.reloads = 0
        self.error = ""
        self._lock = threading.Lock()
        self._pending: tuple[int, int] | None = None  # stamp being loaded or that failed

    def current(self) -> AlignerHandle | ModelHandle:
        try:
            stamp = stamp_of(self.path)
        except OSError:  # between the two renames of a republish: keep the old one
            return self.handle
        if stamp != self.handle.stamp and stamp != self._pending:
            with self._lock:
                if stamp != self._pending:
                    self._pending = stamp
                    threading.Thread(target=self._reload, args=(stamp,), daemon=True).start()
        return self.handle

    def _reload(self, stamp: tuple[int, int]) -> None:
        try:
            handle = open_handle(self.path, warm=True)
        except (MMRecError, OSError) as exc:  # a broken republish: keep serving the old one
            self.error = f"reload failed: {exc}"
            log.warning("%s: %s", self.path, self.error)
            return
        self.handle, self.error = handle, ""
        self.reloads += 1
        log.info("%s: republished, reloaded", self.path)


class Pool:
    """Every served directory by name (the directory's own name)."""

    def __init__(self, paths: list[Path]) -> None:
        self.lives: dict[str, Live] = {}
        for path in paths:
            live = Live(path)
            name = live.handle.name
            if name in self.lives:
                raise ConfigError(f"two served directories are named {name!r}: "
                                  "a request picks one by its directory name")
            self.lives[name] = live

    def pick(self, kind: Kind, name: str | None) -> Any:
        handles = {n: h for n, h in self.handles().items() if h.kind is kind}
        if name is not None:
            if name not in handles:
                raise UnknownIdError(f"no {kind.value} named {name!r} is served "
                                     f"(served: {', '.join(handles) or 'none'})")
            return handles[name]
        if not handles:
            raise ConfigError(f"no {kind.value} is served: this needs {ARTICLE[kind]} directory")
        if len(handles) > 1:
            raise ConfigError(f"several {kind.value}s are served: give \"name\", one of "
                              f"{', '.join(handles)}")
        return next(iter(handles.values()))

    def handles(self) -> dict[str, Any]:
        return {name: live.current() for name, live in self.lives.items()}

    def holding(self, item_id: str, name: str | None) -> Any:
        """The handle ``name``, or else the first served one that holds ``item_id``."""
        handles = self.handles()
        if name is not None:
            if name not in handles:
                raise UnknownIdError(f"no directory named {name!r} is served")
            return handles[name]
        for handle in handles.values():
            if handle.has(item_id):
                return handle
        raise UnknownIdError(f"unknown item id {item_id!r}")

    def status(self) -> list[dict[str, Any]]:
        out = []
        for live in self.lives.values():
            info = live.current().info()
            out.append({**info, "reloads": live.reloads, **({"error": live.error} if live.error else {})})
        return out
