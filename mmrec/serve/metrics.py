"""Request counts and latency histograms per endpoint, as Prometheus text.

Small enough to keep here rather than depend on prometheus_client, and it holds no
process-global registry, so every app (and every test) starts from zero.
"""
from __future__ import annotations

import threading
from collections import defaultdict

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.buckets: dict[str, list[int]] = defaultdict(lambda: [0] * len(BUCKETS))
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, endpoint, status)] += 1
            counts = self.buckets[endpoint]
            for n, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[n] += 1
            self.sums[endpoint] += seconds
            self.counts[endpoint] += 1

    def render(self) -> str:
        with self._lock:
            lines = ["# HELP mmrec_requests_total HTTP requests by endpoint and status.",
                     "# TYPE mmrec_requests_total counter"]
            for (method, endpoint, status), n in sorted(self.requests.items()):
                lines.append(f'mmrec_requests_total{{method="{method}",endpoint="{endpoint}",'
                             f'status="{status}"}} {n}')
            lines += ["# HELP mmrec_request_seconds Request latency by endpoint.",
                      "# TYPE mmrec_request_seconds histogram"]
            for endpoint in sorted(self.counts):
                lines += self._histogram(endpoint)
        return "\n".join(lines) + "\n"

    def _histogram(self, endpoint: str) -> list[str]:
        label = f'endpoint="{endpoint}"'
        out = [f'mmrec_request_seconds_bucket{{{label},le="{bound}"}} {n}'
               for bound, n in zip(BUCKETS, self.buckets[endpoint], strict=True)]
        out.append(f'mmrec_request_seconds_bucket{{{label},le="+Inf"}} {self.counts[endpoint]}')
        out.append(f"mmrec_request_seconds_sum{{{label}}} {self.sums[endpoint]:.6f}")
        out.append(f"mmrec_request_seconds_count{{{label}}} {self.counts[endpoint]}")
        return out
