"""What a server is told: its directories, where it listens and its limits."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from mmrec.errors import ConfigError

MiB = 1 << 20


@dataclass
class ServeConfig:
    paths: list[Path]
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None  # bearer token; required for a non-loopback bind
    cors: list[str] = field(default_factory=list)  # allowed origins; none by default
    max_body: int = 8 * MiB  # a request body larger than this is refused with 413
    max_pixels: int = 16_000_000  # an uploaded image larger than this is refused
    max_k: int = 1000
    feedback_dir: Path | None = None  # default: MODEL.feedback/ beside each served model
    feedback_batch: int = 100  # POST /feedback events folded in once this many wait ...
    feedback_seconds: float = 60.0  # ... or the oldest has waited this long

    def check(self) -> None:
        """Refuse unsafe or impossible settings before anything loads."""
        if not self.paths:
            raise ConfigError("give at least one aligner or model directory to serve")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be 0-65535, got {self.port}")
        if not is_loopback(self.host) and not self.token:
            raise ConfigError(f"--host {self.host} is reachable from other machines: "
                              "it needs --token (or MMREC_TOKEN)",
                              hint="or keep the default --host 127.0.0.1")
        if self.feedback_batch < 1 or self.feedback_seconds < 0:
            raise ConfigError("--feedback-batch must be >= 1 and --feedback-seconds >= 0")
        if self.token is not None and len(self.token) < 8:
            raise ConfigError("--token must be at least 8 characters")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere
