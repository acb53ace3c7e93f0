"""The router's routing table: revisions, their backends and weights, and the per-request choice.

A table is built whole by :func:`build_table` and swapped in by the router in one assignment, so a
request sees either the old table or the new one, never a mix. :class:`Backend` objects outlive
tables: one kept across a change (same revision, host and port) keeps its pool of idle keep-alive
connections; one dropped is marked inactive, so its connections close once their request is done.

The choice is smooth weighted round-robin (nginx's algorithm) between revisions: over every
``sum(weights)`` consecutive requests each revision gets exactly its weight, evenly interleaved
(weights 90/10 give one canary request in every ten, not ten in a row). Inside a revision its
backends take turns. With a sticky header, the header's value is hashed (CRC-32) onto the weight
ranges instead, so one client keeps landing on the same revision while the weights stay put.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from aicd.errors import ConfigError

if TYPE_CHECKING:
    from aicd.deploy.router.backend import BackendConnection

MAX_WEIGHT = 100


class Backend:
    """One instance of one revision: where to connect, and its idle keep-alive connections."""

    __slots__ = (
        "active",
        "address",
        "host",
        "idle",
        "in_flight",
        "port",
        "revision",
    )

    def __init__(self, revision: str, host: str, port: int) -> None:
        self.revision = revision
        self.host = host
        self.port = port
        self.address = f"{host}:{port}"
        self.active = True  # False once a table without it is in place: drain, then close
        self.idle: list[BackendConnection] = []  # LIFO: the most recently used is the warmest
        self.in_flight = 0

    def key(self) -> tuple[str, str, int]:
        return (self.revision, self.host, self.port)

    def __repr__(self) -> str:
        return f"Backend({self.revision}={self.address})"


class _Slot:
    """A revision in the table, with its smooth-weighted-round-robin state."""

    __slots__ = ("backends", "current", "next", "revision", "weight")

    def __init__(self, revision: str, weight: int, backends: list[Backend]) -> None:
        self.revision = revision
        self.weight = weight
        self.backends = backends
        self.current = 0
        self.next = 0

    def take(self) -> Backend:
        backends = self.backends
        if len(backends) == 1:
            return backends[0]
        i = self.next
        self.next = (i + 1) % len(backends)
        return backends[i]


class RouteTable:
    """An immutable set of revisions and weights, with the (mutable) round-robin counters."""

    __slots__ = ("_live", "_slots", "_total", "backends", "weights")

    def __init__(self, slots: list[_Slot]) -> None:
        self._slots = slots
        self._live = [s for s in slots if s.weight > 0 and s.backends]
        self._total = sum(s.weight for s in self._live)
        self.weights = {s.revision: s.weight for s in slots}
        self.backends = {s.revision: [(b.host, b.port) for b in s.backends] for s in slots}

    def all_backends(self) -> Iterable[Backend]:
        for slot in self._slots:
            yield from slot.backends

    def pick(self, sticky: bytes | None = None) -> Backend | None:
        """The backend for the next request, or None when no revision has weight."""
        live = self._live
        if not live:
            return None
        if sticky is not None:
            point = zlib.crc32(sticky)
            target = point % self._total
            for slot in live:
                if target < slot.weight:
                    return slot.backends[(point // self._total) % len(slot.backends)]
                target -= slot.weight
        if len(live) == 1:
            return live[0].take()
        best = live[0]
        best_current = -1
        for slot in live:
            slot.current += slot.weight
            if slot.current > best_current:
                best, best_current = slot, slot.current
        best.current -= self._total
        return best.take()

    def pick_revision(self, revision: str) -> Backend | None:
        """A backend of ``revision`` (its instances take turns), or None when it has none or weight 0."""
        for slot in self._live:
            if slot.revision == revision:
                return slot.take()
        return None

    def alternative(self, failed: Backend, tried: Sequence[Backend]) -> Backend | None:
        """Where to retry after ``failed``: another backend of its revision, else of the stable one.

        The stable revision is the one with the largest weight (the first listed on a tie); then
        any other live revision. Backends already tried are skipped; None when all were.
        """
        candidates: list[_Slot] = [s for s in self._slots if s.revision == failed.revision]
        candidates += sorted(
            (s for s in self._live if s.revision != failed.revision), key=lambda s: -s.weight
        )
        for slot in candidates:
            for backend in slot.backends:
                if backend is not failed and backend not in tried:
                    return backend
        return None


def _check_address(revision: str, entry: object) -> tuple[str, int]:
    if (
        not isinstance(entry, tuple | list)
        or len(entry) != 2
        or not isinstance(entry[0], str)
        or not entry[0]
        or isinstance(entry[1], bool)
        or not isinstance(entry[1], int)
        or not 0 < entry[1] < 65536
    ):
        raise ConfigError(
            f"router: backend {entry!r} of revision {revision!r} is not a (host, port) pair "
            "with a port in 1-65535"
        )
    return entry[0], entry[1]


def check_weights(revisions: Iterable[str], weights: Mapping[str, int] | None) -> dict[str, int]:
    """Weights for ``revisions``: given ones checked (integers 0..100, summing to 100), else equal."""
    names = list(revisions)
    if weights is None:
        if not names:
            return {}
        share, extra = divmod(MAX_WEIGHT, len(names))
        return {name: share + (1 if i < extra else 0) for i, name in enumerate(names)}
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ConfigError(f"router: weights name revisions without backends: {', '.join(unknown)}")
    missing = [name for name in names if name not in weights]
    if missing:
        raise ConfigError(f"router: no weight given for revision(s) {', '.join(missing)}")
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
            raise ConfigError(f"router: weight of {name!r} must be an integer 0..100, got {weight!r}")
    if names and sum(weights.values()) != MAX_WEIGHT:
        listed = ", ".join(f"{n}={w}" for n, w in weights.items())
        raise ConfigError(f"router: weights must sum to 100, got {sum(weights.values())} ({listed})")
    return dict(weights)


def build_table(
    backends: Mapping[str, Sequence[tuple[str, int]]],
    weights: Mapping[str, int] | None,
    existing: Mapping[tuple[str, str, int], Backend],
) -> RouteTable:
    """A new table; ``existing`` Backend objects are reused for unchanged (revision, host, port)."""
    slots: list[_Slot] = []
    for revision, addresses in backends.items():
        if not isinstance(revision, str) or not revision:
            raise ConfigError(f"router: revision names must be non-empty strings, got {revision!r}")
        if isinstance(addresses, str | bytes) or not isinstance(addresses, Sequence):
            raise ConfigError(f"router: backends of {revision!r} must be a list of (host, port)")
        members: list[Backend] = []
        seen: set[tuple[str, int]] = set()
        for entry in addresses:
            host, port = _check_address(revision, entry)
            if (host, port) in seen:
                raise ConfigError(f"router: backend {host}:{port} is listed twice for {revision!r}")
            seen.add((host, port))
            members.append(existing.get((revision, host, port)) or Backend(revision, host, port))
        slots.append(_Slot(revision, 0, members))
    checked = check_weights([s.revision for s in slots], weights)
    for slot in slots:
        slot.weight = checked[slot.revision]
        if slot.weight > 0 and not slot.backends:
            raise ConfigError(f"router: revision {slot.revision!r} has weight {slot.weight} but no backends")
    return RouteTable(slots)
