"""Per-revision request metrics of the router: what the canary analysis reads.

For each revision: requests answered, counts by status code and by class (``2xx``...), errors
(every 5xx, the router's own 502/503/504 included) and proxy errors alone (answers the router made
because the backend could not be reached, broke the response or timed out), a latency histogram
with fixed bucket bounds in milliseconds, and a reservoir of the most recent raw latencies
(a bounded deque: the last ``reservoir_size`` requests) for rank tests such as Mann-Whitney U.
Latency is from the end of the request's headers at the router to the last byte of the answer
handed to the client socket.

Optionally, values of one JSON field in the answers to one path are counted (the iris service's
``"predictions"`` on ``/predict``): a list counts each element, a scalar counts itself. A string
is keyed by itself, anything else by its JSON text (``0`` -> ``"0"``, ``true`` -> ``"true"``).
Only 2xx answers with a JSON body of at most :data:`MAX_CAPTURE` bytes are read.

With a :class:`~aicd.deploy.router.feedback.FeedbackJoin`, the counted field of each such answer is
kept by request id until its label arrives (``POST /_aicd/feedback``); joined labels grow the
revision's live quality counters: ``labels`` (predicted, true pairs), ``correct``, the sums of
absolute and squared errors of numeric pairs, and a reservoir of the most recent absolute errors.
"""

from __future__ import annotations

import json
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aicd.deploy.router.feedback import DEFAULT_MAX_REQUESTS, DEFAULT_WINDOW, FeedbackJoin

LATENCY_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 30000.0,
)  # fmt: skip
"""Upper bounds (inclusive) of the histogram buckets; one more bucket counts everything slower."""

MAX_CAPTURE = 64 * 1024
CLIENT_CLOSED = 499  # nginx's code for "the client went away before the answer": not an error


@dataclass(frozen=True)
class FieldCount:
    """Count values of JSON field ``field`` in 2xx answers to requests for ``path`` (no query)."""

    path: str
    field: str

    @property
    def path_bytes(self) -> bytes:
        return self.path.encode("latin-1")


def _field_key(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


class RevisionMetrics:
    """Counters of one revision."""

    __slots__ = (
        "abs_error_sum",
        "abs_errors",
        "client_closed",
        "correct",
        "errors",
        "field_values",
        "histogram",
        "labels",
        "latency_sum_ms",
        "numeric_labels",
        "proxy_errors",
        "requests",
        "reservoir",
        "retries",
        "sq_error_sum",
        "status",
    )

    def __init__(self, reservoir_size: int) -> None:
        self.requests = 0
        self.errors = 0
        self.proxy_errors = 0
        self.retries = 0
        self.client_closed = 0
        self.status: dict[int, int] = {}
        self.histogram = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        self.latency_sum_ms = 0.0
        self.reservoir: deque[float] = deque(maxlen=reservoir_size)
        self.field_values: dict[str, int] = {}
        self.labels = 0
        self.correct = 0
        self.numeric_labels = 0
        self.abs_error_sum = 0.0
        self.sq_error_sum = 0.0
        self.abs_errors: deque[float] = deque(maxlen=reservoir_size)

    def add_labels(self, joined: list[tuple[Any, Any]]) -> None:
        """(predicted, true) pairs of one labelled request."""
        for predicted, true in joined:
            self.labels += 1
            if predicted == true:
                self.correct += 1
            if _number(predicted) and _number(true):
                error = abs(float(predicted) - float(true))
                if error == error and error != float("inf"):
                    self.numeric_labels += 1
                    self.abs_error_sum += error
                    self.sq_error_sum += error * error
                    self.abs_errors.append(error)

    def quality(self) -> dict[str, Any]:
        labels, numeric = self.labels, self.numeric_labels
        return {
            "labels": labels,
            "correct": self.correct,
            "accuracy": round(self.correct / labels, 6) if labels else None,
            "numeric_labels": numeric,
            "abs_error_sum": round(self.abs_error_sum, 9),
            "sq_error_sum": round(self.sq_error_sum, 9),
            "mae": round(self.abs_error_sum / numeric, 9) if numeric else None,
            "rmse": round((self.sq_error_sum / numeric) ** 0.5, 9) if numeric else None,
            "abs_errors": [round(v, 9) for v in self.abs_errors],
        }

    def snapshot(self) -> dict[str, Any]:
        classes: dict[str, int] = {}
        for code, n in self.status.items():
            key = f"{code // 100}xx"
            classes[key] = classes.get(key, 0) + n
        return {
            "requests": self.requests,
            "errors": self.errors,
            "proxy_errors": self.proxy_errors,
            "retries": self.retries,
            "client_closed": self.client_closed,
            "status": {str(code): n for code, n in sorted(self.status.items())},
            "status_class": dict(sorted(classes.items())),
            "latency_ms": {
                "buckets": [*LATENCY_BUCKETS_MS, None],
                "counts": list(self.histogram),
                "count": self.requests,
                "sum": round(self.latency_sum_ms, 3),
            },
            "reservoir_ms": [round(v, 3) for v in self.reservoir],
            "field_values": dict(sorted(self.field_values.items())),
            "quality": self.quality(),
        }


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class RouterMetrics:
    """The counters of every revision seen since the last :meth:`reset`."""

    def __init__(
        self,
        reservoir_size: int = 5000,
        field_count: FieldCount | None = None,
        *,
        feedback_window: float | None = None,
        feedback_max_requests: int | None = None,
    ) -> None:
        if reservoir_size < 1:
            raise ValueError("reservoir_size must be at least 1")
        self.reservoir_size = reservoir_size
        self.field_count = field_count
        self.feedback = FeedbackJoin(
            self._add_labels,
            window=DEFAULT_WINDOW if feedback_window is None else feedback_window,
            max_requests=DEFAULT_MAX_REQUESTS if feedback_max_requests is None else feedback_max_requests,
        )
        self.revisions: dict[str, RevisionMetrics] = {}
        self.unrouted = 0  # answered 503 because no revision had weight
        self.refused = 0  # over a head limit (431, 414): answered by the router, sent nowhere
        self.feedback_requests = 0  # requests to /_aicd/feedback
        self.since = time.time()
        # merges what the native data plane counted (see .native); called before every read-out
        self.sync: Callable[[], None] | None = None

    def of(self, revision: str) -> RevisionMetrics:
        metrics = self.revisions.get(revision)
        if metrics is None:
            metrics = self.revisions[revision] = RevisionMetrics(self.reservoir_size)
        return metrics

    def record(self, revision: str, status: int, latency_ms: float, proxy_error: bool = False) -> None:
        m = self.revisions.get(revision) or self.of(revision)
        if status == CLIENT_CLOSED:
            m.client_closed += 1
            return
        m.requests += 1
        m.status[status] = m.status.get(status, 0) + 1
        if status >= 500:
            m.errors += 1
            if proxy_error:
                m.proxy_errors += 1
        m.histogram[bisect_left(LATENCY_BUCKETS_MS, latency_ms)] += 1
        m.latency_sum_ms += latency_ms
        m.reservoir.append(latency_ms)

    def record_retry(self, revision: str) -> None:
        self.of(revision).retries += 1

    def _add_labels(self, revision: str, joined: list[tuple[Any, Any]]) -> None:
        self.of(revision).add_labels(joined)

    def record_body(self, revision: str, body: bytes, request_id: bytes = b"") -> Any:
        """Count the configured field's values in a captured JSON answer (ignored if not JSON);
        keep them by ``request_id`` for a label to come. The field's value (None: none)."""
        if self.field_count is None:
            return None
        try:
            doc = json.loads(body)
        except ValueError:
            return None
        if not isinstance(doc, dict) or self.field_count.field not in doc:
            return None
        value = doc[self.field_count.field]
        if request_id:
            self.feedback.remember(request_id, revision, value, size=len(body))
        counts = self.of(revision).field_values
        for item in value if isinstance(value, list) else [value]:
            key = _field_key(item)
            counts[key] = counts.get(key, 0) + 1
        return value

    def reset(self) -> None:
        if self.sync is not None:
            self.sync()  # what the native plane counted so far belongs to the period that ends
        self.revisions = {}
        self.unrouted = 0
        self.refused = 0
        self.since = time.time()

    def prometheus(self) -> bytes:
        """Per-revision requests and live quality in Prometheus' text format (``GET /_aicd/metrics``)."""
        if self.sync is not None:
            self.sync()
        lines: list[str] = []

        def family(name: str, kind: str, text: str, samples: list[tuple[str, float | None]]) -> None:
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{{{labels}}} {value:g}" for labels, value in samples if value is not None)

        revisions = sorted(self.revisions.items())

        def per_revision(get: Any) -> list[tuple[str, float | None]]:
            return [(f'revision="{_label(name)}"', get(m)) for name, m in revisions]

        family(
            "aicd_router_requests_total", "counter", "Answered requests", per_revision(lambda m: m.requests)
        )
        family("aicd_router_errors_total", "counter", "5xx answers", per_revision(lambda m: m.errors))
        family(
            "aicd_live_labels_total",
            "counter",
            "Labels joined to this revision's answers",
            per_revision(lambda m: m.labels),
        )
        family(
            "aicd_live_correct_total",
            "counter",
            "Labelled answers that were right",
            per_revision(lambda m: m.correct),
        )
        family(
            "aicd_live_accuracy",
            "gauge",
            "Right / labelled answers",
            per_revision(lambda m: m.correct / m.labels if m.labels else None),
        )
        family(
            "aicd_live_mae",
            "gauge",
            "Mean absolute error of labelled numeric answers",
            per_revision(lambda m: m.abs_error_sum / m.numeric_labels if m.numeric_labels else None),
        )
        family(
            "aicd_live_rmse",
            "gauge",
            "Root mean squared error of labelled numeric answers",
            per_revision(lambda m: (m.sq_error_sum / m.numeric_labels) ** 0.5 if m.numeric_labels else None),
        )
        counts = self.feedback.counts
        family(
            "aicd_feedback_labels_total",
            "counter",
            "Labels received, by outcome (joined, unknown, expired, duplicate, invalid)",
            [(f'outcome="{outcome}"', float(n)) for outcome, n in counts.items()],
        )
        family(
            "aicd_feedback_waiting",
            "gauge",
            "Answers waiting for their label",
            [("", float(len(self.feedback.waiting)))],
        )
        return ("\n".join(lines) + "\n").encode()

    def snapshot(self) -> dict[str, Any]:
        if self.sync is not None:
            self.sync()
        return {
            "since": self.since,
            "unrouted": self.unrouted,
            "refused": self.refused,
            "feedback": {**self.feedback.snapshot(), "requests": self.feedback_requests},
            "revisions": {name: m.snapshot() for name, m in self.revisions.items()},
        }
