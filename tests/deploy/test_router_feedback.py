"""Request ids and delayed labels through the real router, to real backends over 127.0.0.1.

Every request gets an X-Request-Id (a sane incoming one is kept); ``POST /_aicd/feedback`` joins
labels to the revision that answered and its prediction, within a bounded window.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from router_servers import BackendServer, read_response, serve_in_thread

from aicd.deploy.router.feedback import FeedbackJoin
from aicd.deploy.router.router import FieldCount, Router


def two_revisions(test: Any, **options: Any) -> None:
    """``test(router, b1, b2)`` with revisions r1 and r2 at 50/50, counting /predict's predictions."""

    async def main() -> None:
        with serve_in_thread("b1") as b1, serve_in_thread("b2") as b2:
            router = Router("127.0.0.1", 0, field_count=FieldCount("/predict", "predictions"), **options)
            router.set_backends(
                {"r1": [("127.0.0.1", b1.port)], "r2": [("127.0.0.1", b2.port)]}, {"r1": 50, "r2": 50}
            )
            await router.start()
            try:
                await test(router, b1, b2)
            finally:
                await router.stop()

    asyncio.run(main())


def echoed(response: httpx.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.json()["headers"]}


def test_every_request_gets_an_id_a_sane_incoming_one_is_kept() -> None:
    async def test(router: Router, b1: BackendServer, b2: BackendServer) -> None:
        async with httpx.AsyncClient(base_url=router.url) as client:
            first = await client.get("/echo")
            second = await client.get("/echo")
            kept = await client.get("/echo", headers={"X-Request-Id": "order-42.a:b"})
            insane = await client.get("/echo", headers={"X-Request-Id": "bad id\twith<spaces>"})
            too_long = await client.get("/echo", headers={"X-Request-Id": "a" * 129})
        ids = [r.headers["x-request-id"] for r in (first, second, kept, insane, too_long)]
        assert ids[0] != ids[1] and ids[0] and ids[1]
        assert ids[2] == "order-42.a:b"
        assert ids[3] not in ("bad id\twith<spaces>", "") and ids[4] != "a" * 129
        assert len(set(ids)) == 5
        for response, rid in zip((first, second, kept, insane, too_long), ids, strict=True):
            assert echoed(response)["x-request-id"] == rid  # the backend got the same id
            assert response.headers.get_list("x-request-id") == [rid]  # once, though it echoes

    two_revisions(test)


def test_request_ids_can_be_turned_off_and_router_answers_carry_them() -> None:
    async def test(router: Router, b1: BackendServer, b2: BackendServer) -> None:
        async with httpx.AsyncClient(base_url=router.url) as client:
            r = await client.get("/echo")
        assert "x-request-id" not in r.headers and "x-request-id" not in echoed(r)

    two_revisions(test, request_ids=False)

    async def unrouted() -> None:
        router = Router("127.0.0.1", 0)
        await router.start()
        try:
            async with httpx.AsyncClient(base_url=router.url) as client:
                r = await client.get("/x", headers={"X-Request-Id": "mine-1"})
            assert r.status_code == 503 and r.headers["x-request-id"] == "mine-1"
        finally:
            await router.stop()

    asyncio.run(unrouted())


def test_labels_join_the_revision_that_answered_and_its_prediction() -> None:
    async def test(router: Router, b1: BackendServer, b2: BackendServer) -> None:
        answered: dict[str, tuple[str, list[int]]] = {}
        async with httpx.AsyncClient(base_url=router.url) as client:
            for i in range(40):
                r = await client.post(f"/predict?classes={i % 3}", content=b"{}")
                answered[r.headers["x-request-id"]] = (r.headers["x-backend"], r.json()["predictions"])
            # the truth: class 0 for every request; posted in a batch, then one by one
            ids = list(answered)
            batch = {"labels": [{"request_id": rid, "label": 0} for rid in ids[:30]]}
            done = await client.post("/_aicd/feedback", json=batch)
            assert done.status_code == 200, done.text
            assert done.json()["joined"] == 30
            for rid in ids[30:]:
                one = await client.post("/_aicd/feedback", json={"request_id": rid, "label": [0]})
                assert one.json()["joined"] == 1
            again = await client.post("/_aicd/feedback", json={"request_id": ids[0], "label": 0})
            unknown = await client.post("/_aicd/feedback", json=[{"request_id": "nope", "label": 1}])
        assert again.json()["duplicate"] == 1 and unknown.json()["unknown"] == 1
        snap = router.snapshot()
        for rev, backend in (("r1", "b1"), ("r2", "b2")):
            mine = [p for b, p in answered.values() if b == backend]
            quality = snap["revisions"][rev]["quality"]
            assert quality["labels"] == len(mine) == 20
            assert quality["correct"] == sum(1 for p in mine if p == [0])
        assert snap["feedback"]["joined"] == 40
        assert snap["feedback"]["duplicate"] == 1 and snap["feedback"]["unknown"] == 1
        assert snap["feedback"]["requests"] == 13
        # labels are the router's: no backend saw them
        assert b1.requests + b2.requests == 40
        # the same figures for Prometheus, on the environment's address
        async with httpx.AsyncClient(base_url=router.url) as client:
            page = await client.get("/_aicd/metrics")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(page.text)
            for s in family.samples
        }
        for rev in ("r1", "r2"):
            quality = snap["revisions"][rev]["quality"]
            assert samples[("aicd_live_labels_total", (("revision", rev),))] == 20
            assert samples[("aicd_live_accuracy", (("revision", rev),))] == pytest.approx(quality["accuracy"])
        assert samples[("aicd_feedback_labels_total", (("outcome", "joined"),))] == 40

    two_revisions(test)


def test_bad_feedback_gets_a_clear_answer_and_the_connection_keeps_serving() -> None:
    async def test(router: Router, b1: BackendServer, b2: BackendServer) -> None:
        async with httpx.AsyncClient(base_url=router.url) as client:
            not_json = await client.post("/_aicd/feedback", content=b"label=1")
            wrong_shape = await client.post("/_aicd/feedback", json={"labels": "x"})
            malformed_item = await client.post("/_aicd/feedback", json=[{"label": 1}])
            too_big = await client.post("/_aicd/feedback", content=b"[" + b" " * 300_000 + b"]")
            get = await client.get("/_aicd/feedback")
            other = await client.post("/_aicd/other", content=b"{}")
            still = await client.get("/echo")
        assert not_json.status_code == 400 and "must be JSON" in not_json.json()["error"]
        assert wrong_shape.status_code == 400 and "list" in wrong_shape.json()["error"]
        assert malformed_item.status_code == 200 and malformed_item.json()["invalid"] == 1
        assert too_big.status_code == 413 and "smaller batches" in too_big.json()["error"]
        assert get.status_code == 405 and other.status_code == 404
        assert still.status_code == 200

    two_revisions(test)


def test_chunked_and_pipelined_feedback_is_read_whole() -> None:
    async def test(router: Router, b1: BackendServer, b2: BackendServer) -> None:
        async with httpx.AsyncClient(base_url=router.url) as client:
            r = await client.post("/predict?classes=2", content=b"{}", headers={"X-Request-Id": "p-1"})
        assert r.headers["x-request-id"] == "p-1"
        body = json.dumps({"request_id": "p-1", "label": 2}).encode()
        half = len(body) // 2
        chunked = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, body[:half], len(body) - half, body[half:])
        reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
        writer.write(
            b"POST /_aicd/feedback HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunked
            + b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        first = await read_response(reader)
        second = await read_response(reader)
        writer.close()
        assert first.status == 200 and json.loads(first.body)["joined"] == 1
        assert second.status == 200
        quality = router.snapshot()["revisions"]
        assert sum(q["quality"]["correct"] for q in quality.values()) == 1

    two_revisions(test)


def test_the_join_window_is_bounded_and_late_labels_are_counted_expired() -> None:
    seen: list[tuple[str, list[tuple[Any, Any]]]] = []
    join = FeedbackJoin(lambda rev, pairs: seen.append((rev, pairs)), window=10.0, max_requests=3)
    for i in range(5):  # two more than it keeps: the oldest two are dropped
        join.remember(f"id-{i}".encode(), "r1", [1], now=100.0 + i)
    assert len(join.waiting) == 3 and join.dropped == 2
    assert join.label("id-0", 1, now=105.0) == "expired"
    assert join.label("id-4", 1, now=105.0) == "joined"
    assert join.label("id-3", 1, now=200.0) == "expired"  # older than the window
    assert join.label("never", 1, now=200.0) == "unknown"
    assert join.label("id-4", 1, now=200.0) == "duplicate"
    assert seen == [("r1", [(1, 1)])]
    # memory stays flat however many requests come
    for i in range(10_000):
        join.remember(f"x-{i}".encode(), "r1", 0, now=300.0 + i / 1000)
    assert len(join.waiting) <= 3 and len(join.gone) <= 3
    # and in bytes: large answers push older ones out before the count does
    big = FeedbackJoin(lambda rev, pairs: None, window=10.0, max_requests=1000)
    big.max_bytes = 10_000
    for i in range(100):
        big.remember(f"b-{i}".encode(), "r1", [0] * 100, now=1.0, size=1000)
    assert big.bytes <= 10_000 and len(big.waiting) < 10 and big.dropped > 90


def test_label_shapes_and_numeric_errors() -> None:
    seen: list[tuple[str, list[tuple[Any, Any]]]] = []
    join = FeedbackJoin(lambda rev, pairs: seen.append((rev, pairs)))
    join.remember(b"a", "r1", [0, 1, 2])
    join.remember(b"b", "r1", 3.5)
    assert join.label("a", [0, 1]) == "invalid"  # wrong length: the request keeps its one label
    assert join.label("a", [0, 2, 2]) == "joined"
    assert join.label("b", {"x": 1}) == "invalid"
    assert join.label("b", 3.0) == "joined"
    assert seen == [("r1", [(0, 0), (1, 2), (2, 2)]), ("r1", [(3.5, 3.0)])]


@pytest.mark.parametrize("wait", [0.0, 1.5])
def test_labels_after_the_answer_count_then_expire_with_the_window(wait: float) -> None:
    async def test(router: Router, b1: BackendServer, b2: BackendServer) -> None:
        async with httpx.AsyncClient(base_url=router.url) as client:
            r = await client.post("/predict?classes=1", content=b"{}")
            await asyncio.sleep(wait)
            done = await client.post(
                "/_aicd/feedback", json={"request_id": r.headers["x-request-id"], "label": 1}
            )
        expected = "joined" if wait < 1.0 else "expired"
        assert done.json()[expected] == 1

    started = time.monotonic()
    two_revisions(test, feedback_window=1.0)
    assert time.monotonic() - started < 60
