"""Steady generated traffic on a service's POST /predict: what `aicd demo` judges canaries on.

A few threads, each with its own keep-alive connection, send the same small request in a loop
and count the answers. With ``labels``, each answer's true classes are posted back (by its
``X-Request-Id``, in batches) to the router's ``/_aicd/feedback``, as a labelling team would
later: the canary analysis and `aicd metrics` then show live accuracy per revision. The loop is
bounded in time and in count and stops by itself; it only ever targets the address it is given
(the demo's own router on 127.0.0.1).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Self

ROWS: dict[str, Any] = {"features": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.8, 2.2]]}
MAX_SECONDS = 900.0  # a load left behind stops by itself after this long
MAX_REQUESTS = 1_000_000
LABEL_BATCH = 20  # labels posted together
FEEDBACK_PATH = "/_aicd/feedback"


@dataclass(frozen=True)
class TrafficCounts:
    """What the load saw: answers by HTTP status (0: no answer), and failures (not 200)."""

    requests: int
    failures: int
    statuses: dict[int, int]

    def since(self, earlier: TrafficCounts) -> TrafficCounts:
        statuses = {code: n - earlier.statuses.get(code, 0) for code, n in self.statuses.items()}
        return TrafficCounts(
            self.requests - earlier.requests,
            self.failures - earlier.failures,
            {code: n for code, n in statuses.items() if n},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "failures": self.failures,
            "statuses": {str(code): n for code, n in sorted(self.statuses.items())},
        }


class TrafficLoad:
    """POST `path` on `url` from `workers` threads, `pause` seconds between a thread's requests."""

    def __init__(
        self,
        url: str,
        *,
        workers: int = 2,
        pause: float = 0.02,
        path: str = "/predict",
        body: dict[str, Any] | None = None,
        max_seconds: float = MAX_SECONDS,
        max_requests: int = MAX_REQUESTS,
        keep_log: bool = False,
        labels: Any = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.workers = workers
        self.pause = pause
        self.path = path
        self.body = ROWS if body is None else body
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self._statuses: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.last_failure: str | None = None
        # with keep_log: (when the request was sent, status, what failed) of every request, in order
        self.keep_log = keep_log
        self.log: list[tuple[float, int, str]] = []
        self.labels = labels  # the true answer to `body`, posted as feedback (None: no labels)
        self.labels_joined = 0

    def start(self) -> Self:
        deadline = time.monotonic() + self.max_seconds
        for index in range(self.workers):
            thread = threading.Thread(
                target=self._run, args=(deadline,), name=f"aicd-demo-load-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def _run(self, deadline: float) -> None:
        import httpx

        pending: list[dict[str, Any]] = []
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                sent = time.time()
                try:
                    response = client.post(self.path, json=self.body)
                    status, what = response.status_code, response.text[:200]
                    rid = response.headers.get("x-request-id")
                    if self.labels is not None and status == 200 and rid:
                        pending.append({"request_id": rid, "label": self.labels})
                    if len(pending) >= LABEL_BATCH:
                        self._post_labels(client, pending)
                        pending = []
                except httpx.HTTPError as exc:
                    status, what = 0, f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self._statuses[status] += 1
                    if status != 200:
                        self.last_failure = f"{status} {what}".strip()
                    if self.keep_log:
                        self.log.append((sent, status, "" if status == 200 else what))
                    if sum(self._statuses.values()) >= self.max_requests:
                        self._stop.set()
                self._stop.wait(self.pause)

    def _post_labels(self, client: Any, labels: list[dict[str, Any]]) -> None:
        """Post one batch of labels (a failed post loses them: feedback is best effort)."""
        answer = client.post(FEEDBACK_PATH, json={"labels": labels})
        if answer.status_code == 200:
            with self._lock:
                self.labels_joined += int(answer.json().get("joined", 0))

    def counts(self) -> TrafficCounts:
        with self._lock:
            statuses = dict(self._statuses)
        total = sum(statuses.values())
        return TrafficCounts(total, total - statuses.get(200, 0), statuses)

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def stop(self, timeout: float = 15.0) -> TrafficCounts:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=timeout)
        return self.counts()
