"""A/B experiments in the router: which variant serves a request, stably per user.

An :class:`Experiment` names its variants (``a``, ``b``, ...: each a revision with a weight in
percent). A request's variant is chosen

1. by ``X-Aicd-Variant: b`` (a variant name or its revision) when overrides are allowed: for
   testing a variant by hand; counted as ``forced``;
2. else by the user's key, the value of the header (or the cookie) the experiment names: a hash
   of the experiment's id and the key (BLAKE2b, 64 bits) picks a bucket 0..9999, and the weights
   split the buckets in variant order. The same key lands on the same variant for as long as the
   experiment's id and weights stay the same: across requests, connections, router restarts and
   machines (nothing is stored). Another experiment (another id) splits the same users afresh;
3. else (no key) per request, by the table's weighted round-robin at the same weights.

The variant is returned to the client in ``X-Aicd-Variant`` and recorded on the revision's
counters (its requests, latency, errors and, joined by request id, its live accuracy). With
``metric_header``, the number the service reports in that response header is kept per variant
(count, sum, sum of squares and a reservoir of the most recent values) for the experiment's test.
The value can also come later through ``POST /_aicd/feedback`` as ``{"request_id": ..., "value":
12.5}`` (a purchase made after the answer, say): the newest :data:`REMEMBERED` request ids are
kept with their variant while the experiment runs, one value per request.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aicd.errors import ConfigError

if TYPE_CHECKING:
    from aicd.deploy.router.table import Backend, RouteTable

BUCKETS = 10_000
VARIANT_HEADER = b"x-aicd-variant"
RESERVOIR = 50_000
REMEMBERED = 100_000  # request ids kept (the newest) for a business value posted as feedback


class Variant:
    """One arm of the experiment and what the router saw of it."""

    __slots__ = ("assigned", "n", "name", "revision", "sum", "sum_sq", "values", "weight")

    def __init__(self, name: str, revision: str, weight: int) -> None:
        self.name = name
        self.revision = revision
        self.weight = weight
        self.assigned = 0
        self.n = 0  # answers that reported the business metric
        self.sum = 0.0
        self.sum_sq = 0.0
        self.values: deque[float] = deque(maxlen=RESERVOIR)

    def add(self, value: float) -> None:
        self.n += 1
        self.sum += value
        self.sum_sq += value * value
        self.values.append(value)

    def stats(self, *, values: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "revision": self.revision,
            "weight": self.weight,
            "assigned": self.assigned,
            "metric_n": self.n,
            "metric_sum": self.sum,
            "metric_sum_sq": self.sum_sq,
        }
        if values:
            out["metric_values"] = list(self.values)
        return out


class Experiment:
    """Variants, weights and the key that assigns users to them (see the module's text)."""

    def __init__(
        self,
        experiment_id: str,
        variants: Sequence[tuple[str, str, int]],
        *,
        header: str | None = None,
        cookie: str | None = None,
        override: bool = True,
        metric_header: str | None = None,
    ) -> None:
        if not experiment_id:
            raise ConfigError("experiment: the id must not be empty")
        if len(variants) < 2:
            raise ConfigError("experiment: at least two variants are needed")
        if header and cookie:
            raise ConfigError("experiment: the key is a header or a cookie, not both")
        names = [v[0] for v in variants]
        revisions = [v[1] for v in variants]
        if len(set(names)) != len(names) or len(set(revisions)) != len(revisions):
            raise ConfigError("experiment: variant names and revisions must be distinct")
        weights = [v[2] for v in variants]
        if (
            any(isinstance(w, bool) or not isinstance(w, int) or w < 0 for w in weights)
            or sum(weights) != 100
        ):
            raise ConfigError(f"experiment: weights must be whole percents summing to 100 (are {weights})")
        self.id = experiment_id
        self._salt = experiment_id.encode() + b"\x00"
        self.variants = [Variant(*v) for v in variants]
        self.by_name = {v.name.encode(): v for v in self.variants}
        self.by_name.update({v.revision.encode(): v for v in self.variants})
        self.by_revision = {v.revision: v for v in self.variants}
        self.bounds: list[tuple[int, Variant]] = []
        edge = 0
        for variant in self.variants:
            edge += variant.weight * (BUCKETS // 100)
            self.bounds.append((edge, variant))
        self.key_header = (header or "").lower().encode("latin-1") or (b"cookie" if cookie else None)
        self.cookie = cookie.encode("latin-1") if cookie else None
        self.override = override
        self.metric_header = metric_header.lower().encode("latin-1") if metric_header else None
        self.keyed = 0
        self.unkeyed = 0
        self.forced = 0
        self.requests: OrderedDict[bytes, Variant] = OrderedDict()  # request id -> its variant

    def bucket(self, key: bytes) -> int:
        digest = hashlib.blake2b(self._salt + key, digest_size=8).digest()
        return int.from_bytes(digest, "big") % BUCKETS

    def variant_of(self, key: bytes) -> Variant:
        """The variant of a user key (stable: a pure function of the experiment's id and the key)."""
        point = self.bucket(key)
        for edge, variant in self.bounds:
            if point < edge:
                return variant
        return self.bounds[-1][1]

    def key_in(self, value: bytes) -> bytes | None:
        """The user key in the key header's value (the named cookie's value when keyed by cookie)."""
        if self.cookie is None:
            return value or None
        for part in value.split(b";"):
            name, sep, found = part.strip().partition(b"=")
            if sep and name == self.cookie:
                return found.strip(b'"') or None
        return None

    def pick(
        self, table: RouteTable, key: bytes | None, forced: bytes | None
    ) -> tuple[Backend | None, Variant | None]:
        """The backend and variant of one request."""
        variant: Variant | None = None
        if forced is not None and self.override:
            variant = self.by_name.get(forced.strip().lower()) or self.by_name.get(forced.strip())
            if variant is not None:
                self.forced += 1
        if variant is None and key is not None:
            variant = self.variant_of(key)
            self.keyed += 1
        if variant is not None:
            backend = table.pick_revision(variant.revision)
            if backend is not None:
                variant.assigned += 1
                return backend, variant
        self.unkeyed += 1
        backend = table.pick(None)
        if backend is None:
            return None, None
        variant = self.by_revision.get(backend.revision)
        if variant is not None:
            variant.assigned += 1
        return backend, variant

    def remember(self, request_id: bytes, variant: Variant) -> None:
        """Keep which variant answered ``request_id``, for a value posted later as feedback."""
        requests = self.requests
        requests[request_id] = variant
        if len(requests) > REMEMBERED:
            requests.popitem(last=False)

    def value(self, request_id: str, value: Any) -> str:
        """A business value posted for an earlier request: its outcome (joined, unknown, invalid)."""
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            return "invalid"
        if abs(value) == float("inf"):
            return "invalid"
        variant = self.requests.pop(request_id.encode("latin-1", "replace"), None)
        if variant is None:
            return "unknown"
        variant.add(float(value))
        return "joined"

    def record_metric(self, revision: str, headers: Sequence[tuple[bytes, bytes]]) -> None:
        """The business metric of one answer of ``revision`` (its ``metric_header``), if it is a number."""
        name = self.metric_header
        variant = self.by_revision.get(revision)
        if name is None or variant is None:
            return
        for header, value in headers:
            if header.lower() == name:
                try:
                    number = float(value)
                except ValueError:
                    return
                if number == number and abs(number) != float("inf"):
                    variant.add(number)
                return

    def stats(self, *, values: bool = False) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": (
                {"cookie": self.cookie.decode("latin-1")}
                if self.cookie
                else {"header": self.key_header.decode("latin-1")}
                if self.key_header
                else None
            ),
            "keyed": self.keyed,
            "unkeyed": self.unkeyed,
            "forced": self.forced,
            "variants": {v.name: v.stats(values=values) for v in self.variants},
        }


__all__ = ["BUCKETS", "VARIANT_HEADER", "Experiment", "Variant"]
