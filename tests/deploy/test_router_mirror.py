"""The router's mirror (shadow traffic) over real sockets: copies after the answer, never in its way."""

from __future__ import annotations

import asyncio
import time

import httpx
from router_servers import serve_in_thread

from aicd.deploy.router.mirror import agree
from aicd.deploy.router.router import FieldCount, Router


def test_copies_go_to_the_candidate_users_get_stable_and_agreement_is_counted() -> None:
    async def main() -> None:
        with serve_in_thread("stable") as b1, serve_in_thread("candidate") as b2:
            router = Router("127.0.0.1", 0, field_count=FieldCount("/predict", "predictions"))
            router.set_backends({"r1": [("127.0.0.1", b1.port)]}, {"r1": 100})
            await router.start()
            try:
                mirror = router.start_mirror(
                    "r2", [("127.0.0.1", b2.port)], percent=50, methods=["GET", "POST"]
                )
                async with httpx.AsyncClient(base_url=router.url) as client:
                    answers = [await client.get(f"/predict?classes={i % 3}") for i in range(40)]
                    put = await client.put("/echo", content=b"x")  # not a mirrored method
                for _ in range(200):
                    if mirror.answered >= 20:
                        break
                    await asyncio.sleep(0.02)
                stats = await router.stop_mirror()
            finally:
                await router.stop()
        assert all(a.headers["x-backend"] == "stable" for a in answers) and put.status_code == 200
        assert stats is not None
        assert stats["offered"] == 40 and stats["mirrored"] == 20 and stats["answered"] == 20
        assert stats["compared"] == 20 and stats["agreement"] == 1.0  # the same test server: same answers
        assert b2.requests == 20
        snap = router.snapshot()
        assert snap["revisions"]["r2"]["requests"] == 20  # the candidate's traffic, for the analysis
        assert sum(snap["revisions"]["r2"]["field_values"].values()) == 20

    asyncio.run(main())


def test_a_candidate_that_hangs_or_is_gone_costs_users_nothing_and_drops_are_counted() -> None:
    async def main() -> None:
        hung: list[asyncio.StreamWriter] = []

        async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            hung.append(writer)
            await reader.read(65536)

        silent = await asyncio.start_server(never_answers, "127.0.0.1", 0)
        silent_port = silent.sockets[0].getsockname()[1]
        with serve_in_thread("stable") as b1:
            router = Router("127.0.0.1", 0)
            router.set_backends({"r1": [("127.0.0.1", b1.port)]}, {"r1": 100})
            await router.start()
            try:
                router.start_mirror("r2", [("127.0.0.1", silent_port)], queue_size=2)
                started = time.monotonic()
                async with httpx.AsyncClient(base_url=router.url) as client:
                    answers = [await client.get("/echo") for _ in range(40)]
                took = time.monotonic() - started
                stats = await router.stop_mirror()
                # nothing listens there: every copy fails, users still fine
                router.start_mirror("r2", [("127.0.0.1", 1)])
                async with httpx.AsyncClient(base_url=router.url) as client:
                    more = [await client.get("/echo") for _ in range(10)]
                for _ in range(200):
                    if router.mirror is not None and router.mirror.failed >= 10:
                        break
                    await asyncio.sleep(0.02)
                gone = await router.stop_mirror()
            finally:
                await router.stop()
                silent.close()
                for writer in hung:
                    writer.close()
        assert [a.status_code for a in answers + more] == [200] * 50
        assert took < 20  # generous on a busy machine: nothing waited for the candidate
        assert stats is not None and gone is not None
        assert stats["mirrored"] == 8 + 2 and stats["dropped"] == 30  # 8 workers busy, a queue of 2
        assert gone["failed"] == 10

    asyncio.run(main())


def test_agreement_of_classes_and_numbers() -> None:
    assert agree([0, 1, 2], [0, 2, 2], 0.0) == (2, 3)
    assert agree(1.0, 1.04, 0.05) == (1, 1)
    assert agree(1.0, 1.2, 0.05) == (0, 1)
    assert agree([0, 1], [0], 0.0) == (0, 2)
    assert agree("setosa", "setosa", 0.0) == (1, 1)


def test_shadow_settings_and_a_shadow_phase_before_a_canary_are_checked() -> None:
    import pytest

    from aicd.deploy.plan import RolloutPlan, parse_environment, parse_step_text
    from aicd.errors import ConfigError

    plan = parse_environment(
        "prod",
        {
            "strategy": "canary",
            "steps": [{"shadow": "30s"}, {"set_weight": 20}, {"pause": "10s"}],
            "shadow": {"percent": 50, "methods": ["GET", "POST"], "agreement": 0.9},
        },
        "aicd.yml",
    )
    assert [(s.kind, s.duration, s.weight) for s in plan.steps] == [
        ("shadow", 30.0, None),
        ("set_weight", None, 20),
        ("pause", 10.0, None),
    ]
    assert (
        plan.shadow is not None and plan.shadow["methods"] == ["GET", "POST"] and plan.shadow["percent"] == 50
    )
    assert RolloutPlan.from_json(plan.to_json()) == plan
    alone = parse_environment("prod", {"strategy": "shadow"}, "aicd.yml")
    assert [(s.kind, s.duration) for s in alone.steps] == [("shadow", 60.0)]
    assert parse_step_text("shadow=5s").duration == 5.0
    assert RolloutPlan().with_overrides("shadow", None).steps[0].kind == "shadow"
    with pytest.raises(ConfigError) as bad:
        parse_environment(
            "prod",
            {
                "strategy": "blue-green",
                "steps": [{"shadow": "1s"}],
                "shadow": {"percnt": 5, "methods": "POST"},
            },
            "aicd.yml",
        )
    text = str(bad.value)
    assert "steps are for strategy: canary or shadow" in text
    assert "unknown key 'percnt'" in text and "methods must be a list of HTTP methods" in text
