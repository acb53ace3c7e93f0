"""Weighted choice: the traffic split follows the weights, and a sticky header keeps a client put."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import httpx
from router_servers import serve_in_thread

from aicd.deploy.router.router import Router
from aicd.deploy.router.table import Backend, build_table


def test_split_between_revisions_follows_the_weights_over_real_requests() -> None:
    async def main() -> None:
        with serve_in_thread("a1") as a1, serve_in_thread("a2") as a2, serve_in_thread("b1") as b1:
            async with Router() as router:
                router.set_backends(
                    {"a": [("127.0.0.1", a1.port), ("127.0.0.1", a2.port)], "b": [("127.0.0.1", b1.port)]},
                    {"a": 70, "b": 30},
                )
                limits = httpx.Limits(max_connections=4)
                async with httpx.AsyncClient(base_url=router.url, limits=limits) as client:

                    async def worker(n: int) -> list[str]:
                        return [(await client.get("/echo")).headers["x-backend"] for _ in range(n)]

                    results = await asyncio.gather(*(worker(125) for _ in range(4)))
                seen = Counter(name for names in results for name in names)
                assert sum(seen.values()) == 500
                # smooth weighted round-robin is exact over every 100 picks: 350 / 150
                assert seen["a1"] + seen["a2"] == 350 and seen["b1"] == 150
                assert seen["a1"] == seen["a2"] == 175  # a's two instances take turns
                snap = router.snapshot()["revisions"]
                assert snap["a"]["requests"] == 350 and snap["b"]["requests"] == 150

    asyncio.run(main())


def test_smooth_round_robin_interleaves_instead_of_bursting() -> None:
    table = build_table({"stable": [("h", 1)], "canary": [("h", 2)]}, {"stable": 90, "canary": 10}, {})
    picks = [b.revision for b in (table.pick() for _ in range(100)) if isinstance(b, Backend)]
    assert picks.count("canary") == 10
    positions = [i for i, rev in enumerate(picks) if rev == "canary"]
    assert all(b - a == 10 for a, b in itertools.pairwise(positions))


def test_weights_zero_and_changes_take_effect_on_the_next_request() -> None:
    table = build_table({"a": [("h", 1)], "b": [("h", 2)]}, {"a": 0, "b": 100}, {})
    assert {b.revision for b in (table.pick() for _ in range(50)) if b} == {"b"}
    kept = {b.key(): b for b in table.all_backends()}
    table2 = build_table({"a": [("h", 1)], "b": [("h", 2)]}, {"a": 50, "b": 50}, kept)
    assert Counter(b.revision for b in (table2.pick() for _ in range(50)) if b) == {"a": 25, "b": 25}
    assert {id(b) for b in table2.all_backends()} == {id(b) for b in kept.values()}  # pools survive


def test_sticky_header_keeps_each_client_on_one_revision_in_proportion() -> None:
    async def main() -> None:
        with serve_in_thread("a") as a, serve_in_thread("b") as b:
            async with Router(sticky_header="X-User") as router:
                router.set_backends(
                    {"a": [("127.0.0.1", a.port)], "b": [("127.0.0.1", b.port)]}, {"a": 80, "b": 20}
                )
                async with httpx.AsyncClient(base_url=router.url) as client:
                    homes: dict[str, set[str]] = {}
                    for user in range(200):
                        for _ in range(3):
                            r = await client.get("/echo", headers={"X-User": f"user-{user}"})
                            homes.setdefault(f"user-{user}", set()).add(r.headers["x-backend"])
                assert all(len(where) == 1 for where in homes.values())
                on_b = sum(1 for where in homes.values() if where == {"b"})
                assert 20 <= on_b <= 60  # 20 % of 200 users = 40, give or take the hash

    asyncio.run(main())
