"""Delayed labels: joining the truth, when it arrives, to the revision that answered and its prediction.

The router gives every request an id (:mod:`aicd.deploy.router.proxy`). When an answer to the
counted path (``environments.<env>.predictions``) carries the counted field, :meth:`FeedbackJoin.remember`
keeps ``request id -> (revision, prediction)``. Later, ``POST /_aicd/feedback`` on the
environment's address brings labels::

    {"request_id": "a1b2c3d4-2f", "label": 2}
    {"labels": [{"request_id": "...", "label": 0}, {"request_id": "...", "label": [0, 2]}]}
    {"request_id": "a1b2c3d4-2f", "value": 12.5}     # a business value, while an experiment runs

and :meth:`FeedbackJoin.label` joins each to what it remembers: the revision's counters
(:class:`aicd.deploy.router.metrics.RevisionMetrics`: labels, correct answers, absolute and squared
errors) grow, and the id is forgotten (one label per request).

Memory stays flat: at most ``max_requests`` predictions are kept, none older than ``window``
seconds, and at most ``max_bytes`` of them (counted as the size of the answers they came from);
ids that left the window (or were labelled already) are remembered, bounded the same way, only to
count a late label as ``expired`` (or ``duplicate``) rather than ``unknown``. Unknown,
expired, duplicate and malformed labels are counted, never errors.

A prediction that is a list (a batch of rows) takes a list label of the same length, or a single
value when it has one row. Each pair counts once: ``correct`` when equal (``2 == 2.0``); when both
are numbers (not booleans), its absolute and squared error count too (MAE, RMSE).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

DEFAULT_WINDOW = 3600.0  # seconds a prediction waits for its label
DEFAULT_MAX_REQUESTS = 100_000  # predictions kept at most
DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # ... and at most this much of the answers they came from
MAX_BODY = 256 * 1024  # bytes of one feedback request
MAX_LABELS = 10_000  # labels in one feedback request

JOINED, UNKNOWN, EXPIRED, DUPLICATE, INVALID = "joined", "unknown", "expired", "duplicate", "invalid"
OUTCOMES = (JOINED, UNKNOWN, EXPIRED, DUPLICATE, INVALID)

_GONE_EXPIRED = 0
_GONE_LABELLED = 1

# (revision, prediction, label pairs) -> recorded on the revision's counters
Sink = Callable[[str, list[tuple[Any, Any]]], None]


class FeedbackError(ValueError):
    """A feedback request that is not one the endpoint reads (the message says what to send)."""


def pairs(prediction: Any, label: Any) -> list[tuple[Any, Any]] | None:
    """(predicted, true) pairs of one request, or None when the label does not fit the prediction."""
    if isinstance(prediction, list):
        if isinstance(label, list):
            return list(zip(prediction, label, strict=True)) if len(label) == len(prediction) else None
        return [(prediction[0], label)] if len(prediction) == 1 else None
    if isinstance(label, list):
        return [(prediction, label[0])] if len(label) == 1 else None
    return [(prediction, label)]


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


class FeedbackJoin:
    """Predictions waiting for their labels, by request id; bounded in count and age."""

    def __init__(
        self, sink: Sink, *, window: float = DEFAULT_WINDOW, max_requests: int = DEFAULT_MAX_REQUESTS
    ) -> None:
        if not window > 0:
            raise ValueError("the feedback window must be above 0 seconds")
        if max_requests < 1:
            raise ValueError("max_requests must be at least 1")
        self.sink = sink
        self.window = window
        self.max_requests = max_requests
        self.max_bytes = DEFAULT_MAX_BYTES
        self.bytes = 0
        self.waiting: OrderedDict[bytes, tuple[float, str, Any, int]] = OrderedDict()
        self.gone: OrderedDict[bytes, int] = OrderedDict()  # ids that expired or were labelled
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.dropped = 0  # predictions forgotten unlabelled (too old, or too many)
        # an experiment's business values ({"request_id", "value"}): request id, value -> outcome
        self.value_sink: Callable[[str, Any], str] | None = None

    def remember(
        self, request_id: bytes, revision: str, prediction: Any, now: float | None = None, size: int = 64
    ) -> None:
        """Keep ``prediction`` (what ``revision`` answered to ``request_id``, in an answer of ``size``
        bytes) until its label comes."""
        now = time.monotonic() if now is None else now
        waiting = self.waiting
        old = waiting.pop(request_id, None)
        if old is not None:  # a client reused its id: the latest answer is the one labelled
            self.bytes -= old[3]
        size = len(request_id) + max(size, 16)
        waiting[request_id] = (now, revision, prediction, size)
        self.bytes += size
        self._expire(now)

    def _expire(self, now: float) -> None:
        waiting = self.waiting
        horizon = now - self.window
        while waiting:
            rid, (at, _, _, size) = next(iter(waiting.items()))
            if at >= horizon and len(waiting) <= self.max_requests and self.bytes <= self.max_bytes:
                break
            del waiting[rid]
            self.bytes -= size
            self.dropped += 1
            self._forget(rid, _GONE_EXPIRED)

    def _forget(self, rid: bytes, why: int) -> None:
        gone = self.gone
        gone[rid] = why
        gone.move_to_end(rid)
        while len(gone) > self.max_requests:
            gone.popitem(last=False)

    def label(self, request_id: str, label: Any, now: float | None = None) -> str:
        """Join one label; the outcome (:data:`OUTCOMES`)."""
        now = time.monotonic() if now is None else now
        self._expire(now)
        rid = request_id.encode("latin-1", "replace")
        entry = self.waiting.pop(rid, None)
        if entry is None:
            why = self.gone.get(rid)
            outcome = UNKNOWN if why is None else (EXPIRED if why == _GONE_EXPIRED else DUPLICATE)
            self.counts[outcome] += 1
            return outcome
        _, revision, prediction, size = entry
        self.bytes -= size
        joined = pairs(prediction, label)
        if joined is None or not all(_scalar(t) for _, t in joined):
            self.bytes += size
            self.waiting[rid] = entry  # a malformed label does not use up the request's one label
            self.waiting.move_to_end(rid, last=False)
            self.counts[INVALID] += 1
            return INVALID
        self._forget(rid, _GONE_LABELLED)
        self.sink(revision, joined)
        self.counts[JOINED] += 1
        return JOINED

    def receive(self, body: bytes, now: float | None = None) -> dict[str, int]:
        """A feedback request's body: one ``{request_id, label}``, a list of them, or ``{"labels": [...]}``.

        Returns the count of each outcome in it; FeedbackError when the body is not such JSON.
        """
        if len(body) > MAX_BODY:
            raise FeedbackError(f"the body is larger than {MAX_BODY} bytes; send labels in smaller batches")
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise FeedbackError(
                'the body must be JSON: {"request_id": "...", "label": ...} or {"labels": [...]}'
            ) from None
        items = doc.get("labels") if isinstance(doc, dict) and "labels" in doc else doc
        if isinstance(items, dict):
            items = [items]
        if not isinstance(items, list):
            raise FeedbackError('"labels" must be a list of {"request_id": "...", "label": ...}')
        if len(items) > MAX_LABELS:
            raise FeedbackError(f"{len(items)} labels in one request; at most {MAX_LABELS}")
        result = dict.fromkeys(OUTCOMES, 0)
        for item in items:
            if (
                isinstance(item, dict)
                and isinstance(item.get("request_id"), str)
                and "value" in item
                and "label" not in item
                and self.value_sink is not None
            ):
                outcome = self.value_sink(item["request_id"], item["value"])
                self.counts[outcome] += 1
                result[outcome] += 1
                continue
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("request_id"), str)
                or "label" not in item
            ):
                self.counts[INVALID] += 1
                result[INVALID] += 1
                continue
            result[self.label(item["request_id"], item["label"], now)] += 1
        return result

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.counts,
            "waiting": len(self.waiting),
            "waiting_bytes": self.bytes,
            "dropped": self.dropped,
            "window_s": self.window,
            "max_requests": self.max_requests,
        }


__all__ = ["OUTCOMES", "FeedbackError", "FeedbackJoin", "pairs"]
