"""Request counts and latency of the service, rendered as Prometheus text for GET /metrics."""

from __future__ import annotations

import threading
from collections import defaultdict

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Telemetry:
    """Thread-safe counters: requests by endpoint and status, a latency histogram by endpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._buckets: dict[str, list[int]] = {}
        self._sum: dict[str, float] = defaultdict(float)
        self._count: dict[str, int] = defaultdict(int)
        self._predictions = 0

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(endpoint, method, status)] += 1
            counts = self._buckets.setdefault(endpoint, [0] * len(BUCKETS))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            self._sum[endpoint] += seconds
            self._count[endpoint] += 1

    def predicted(self, rows: int) -> None:
        with self._lock:
            self._predictions += rows

    def render(self, model_version: str) -> str:
        with self._lock:
            lines = [
                "# HELP iris_requests_total HTTP requests by endpoint, method and status.",
                "# TYPE iris_requests_total counter",
            ]
            for (endpoint, method, status), n in sorted(self._requests.items()):
                labels = f'endpoint="{_esc(endpoint)}",method="{method}",status="{status}"'
                lines.append(f"iris_requests_total{{{labels}}} {n}")
            lines += [
                "# HELP iris_request_duration_seconds Time spent handling a request.",
                "# TYPE iris_request_duration_seconds histogram",
            ]
            for endpoint in sorted(self._buckets):
                label = f'endpoint="{_esc(endpoint)}"'
                for bound, n in zip(BUCKETS, self._buckets[endpoint], strict=True):
                    lines.append(f'iris_request_duration_seconds_bucket{{{label},le="{bound}"}} {n}')
                lines.append(
                    f'iris_request_duration_seconds_bucket{{{label},le="+Inf"}} {self._count[endpoint]}'
                )
                lines.append(f"iris_request_duration_seconds_sum{{{label}}} {self._sum[endpoint]:.6f}")
                lines.append(f"iris_request_duration_seconds_count{{{label}}} {self._count[endpoint]}")
            lines += [
                "# HELP iris_predictions_total Rows classified since the service started.",
                "# TYPE iris_predictions_total counter",
                f"iris_predictions_total {self._predictions}",
                "# HELP iris_model_info The model being served.",
                "# TYPE iris_model_info gauge",
                f'iris_model_info{{model_version="{_esc(model_version)}"}} 1',
            ]
        return "\n".join(lines) + "\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
