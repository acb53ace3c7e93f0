"""A/B experiments in the router: stable per-user assignment, the override header, the variant
header, cookies, the business metric header; through real requests to a real router."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from router_servers import read_response, request_bytes, serve_in_thread, spawn_backend

from aicd.deploy.router.experiment import Experiment
from aicd.deploy.router.router import Router
from aicd.deploy.router.table import build_table
from aicd.errors import ConfigError

VARIANTS = [("a", "r1", 50), ("b", "r2", 50)]


def test_the_same_key_always_gets_the_same_variant_also_in_a_new_experiment_object() -> None:
    first = Experiment("exp-1", VARIANTS, header="X-User")
    seen: dict[bytes, str] = {}
    for i in range(10_000):
        key = f"user-{i % 500}".encode()
        name = first.variant_of(key).name
        assert seen.setdefault(key, name) == name
    # a router restarted with the same experiment (a new object: nothing is stored) agrees
    again = Experiment("exp-1", VARIANTS, header="X-User")
    assert all(again.variant_of(key).name == name for key, name in seen.items())
    # 10,000 distinct users split by the weights
    split = Counter(first.variant_of(f"u{i}".encode()).name for i in range(10_000))
    assert 4700 <= split["a"] <= 5300, split
    uneven = Experiment("exp-1", [("a", "r1", 90), ("b", "r2", 10)], header="X-User")
    split = Counter(uneven.variant_of(f"u{i}".encode()).name for i in range(10_000))
    assert 800 <= split["b"] <= 1200, split
    # another experiment splits the same users afresh (independently of the first one)
    other = Experiment("exp-2", VARIANTS, header="X-User")
    same = sum(other.variant_of(key).name == name for key, name in seen.items())
    assert 200 <= same <= 300  # about half of 500 agree by chance


def test_three_variants_and_the_cookie_key() -> None:
    exp = Experiment("e", [("a", "r1", 34), ("b", "r2", 33), ("c", "r3", 33)], cookie="uid")
    assert exp.key_header == b"cookie"
    assert exp.key_in(b"theme=dark; uid=42; x=1") == b"42"
    assert exp.key_in(b'uid="42"') == b"42"
    assert exp.key_in(b"theme=dark") is None
    split = Counter(exp.variant_of(f"{i}".encode()).name for i in range(9_000))
    assert all(2700 <= n <= 3300 for n in split.values()), split
    table = build_table(
        {"r1": [("h", 1)], "r2": [("h", 2)], "r3": [("h", 3)]}, {"r1": 34, "r2": 33, "r3": 33}, {}
    )
    backend, variant = exp.pick(table, None, b"c")
    assert backend is not None and backend.revision == "r3" and variant is not None and variant.name == "c"
    backend, variant = exp.pick(table, None, b"r2")  # a revision name works too
    assert variant is not None and variant.name == "b" and exp.forced == 2


@pytest.mark.parametrize(
    ("variants", "kwargs", "message"),
    [
        ([("a", "r1", 100)], {}, "at least two variants"),
        ([("a", "r1", 60), ("b", "r2", 60)], {}, "summing to 100"),
        ([("a", "r1", 50), ("a", "r2", 50)], {}, "distinct"),
        (VARIANTS, {"header": "X-User", "cookie": "uid"}, "not both"),
    ],
)
def test_bad_experiments_are_refused_with_a_clear_message(
    variants: list[tuple[str, str, int]], kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Experiment("e", variants, **kwargs)


def test_a_real_router_keeps_every_user_on_one_variant_over_10000_requests_and_after_a_restart() -> None:
    users = [f"user-{i}" for i in range(200)]

    async def send_all(router: Router, rounds: int) -> dict[str, set[tuple[str, str]]]:
        # 8 keep-alive connections, each pipelining its users' requests one round at a time (a raw
        # client: httpx cost this test most of its 70-165 s), the backends in their own processes.
        homes: dict[str, set[tuple[str, str]]] = {}
        host, port = router.url.removeprefix("http://").rsplit(":", 1)

        async def worker(part: list[str]) -> None:
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                for _ in range(rounds):
                    writer.write(b"".join(request_bytes("GET", "/echo", headers={"X-User": u}) for u in part))
                    await writer.drain()
                    for user in part:
                        r = await asyncio.wait_for(read_response(reader), 60)
                        assert r.status == 200
                        homes.setdefault(user, set()).add(
                            (r.header("x-aicd-variant") or "", r.header("x-backend") or "")
                        )
            finally:
                writer.close()

        await asyncio.gather(*(worker(users[i::8]) for i in range(8)))
        return homes

    async def main() -> None:
        a, b = spawn_backend("r1"), spawn_backend("r2")
        try:
            backends = {"r1": [("127.0.0.1", a.port)], "r2": [("127.0.0.1", b.port)]}
            async with Router() as router:
                router.set_backends(backends, {"r1": 50, "r2": 50})
                router.start_experiment(Experiment("checkout-7", VARIANTS, header="X-User"))
                homes = await send_all(router, 50)
                stats = router.stop_experiment()
                snap = router.snapshot()
            assert sum(v["assigned"] for v in stats["variants"].values()) == 10_000  # type: ignore[index]
            assert stats is not None and stats["keyed"] == 10_000 and stats["unkeyed"] == 0
            assert all(len(where) == 1 for where in homes.values()), homes
            for where in homes.values():
                ((variant, backend),) = where
                assert backend == {"a": "r1", "b": "r2"}[variant]
            on_b = sum(1 for where in homes.values() if next(iter(where))[0] == "b")
            assert 70 <= on_b <= 130, on_b  # 50 % of 200 users, give or take the hash
            assert snap["revisions"]["r2"]["requests"] == on_b * 50
            # a new router process state (nothing kept): the same users land on the same variants
            async with Router() as router:
                router.set_backends(backends, {"r1": 50, "r2": 50})
                router.start_experiment(Experiment("checkout-7", VARIANTS, header="X-User"))
                again = await send_all(router, 1)
            assert again == homes
        finally:
            a.stop()
            b.stop()

    asyncio.run(main())


def test_override_header_cookie_key_unkeyed_split_and_the_business_metric() -> None:
    async def main() -> None:
        with serve_in_thread("r1") as a, serve_in_thread("r2") as b:
            async with Router() as router:
                router.set_backends(
                    {"r1": [("127.0.0.1", a.port)], "r2": [("127.0.0.1", b.port)]}, {"r1": 80, "r2": 20}
                )
                exp = Experiment(
                    "e", [("a", "r1", 80), ("b", "r2", 20)], cookie="uid", metric_header="X-Value"
                )
                router.start_experiment(exp)
                async with httpx.AsyncClient(base_url=router.url) as client:
                    # the override: the variant asked for, and the header never reaches the service
                    r = await client.get("/echo", headers={"X-Aicd-Variant": "b", "Cookie": "uid=1"})
                    assert r.headers["x-backend"] == "r2" and r.headers["x-aicd-variant"] == "b"
                    sent = {k.lower() for k, _ in r.json()["headers"]}
                    assert "x-aicd-variant" not in sent and "cookie" in sent
                    # an unknown override name falls back to the key
                    r = await client.get("/echo", headers={"X-Aicd-Variant": "zz", "Cookie": "uid=1"})
                    assert r.headers["x-aicd-variant"] == exp.variant_of(b"1").name
                    # by cookie: stable per user
                    for user in range(20):
                        got = {
                            (await client.get("/echo", headers={"Cookie": f"uid={user}"})).headers[
                                "x-aicd-variant"
                            ]
                            for _ in range(3)
                        }
                        assert got == {exp.variant_of(str(user).encode()).name}
                    # no key: per request, at the weights (smooth round-robin: exact over 100)
                    unkeyed = Counter(
                        [(await client.get("/echo")).headers["x-aicd-variant"] for _ in range(100)]
                    )
                    assert unkeyed == {"a": 80, "b": 20}
                    # the business metric each answer reports, per variant
                    for value in ("1.5", "2.5", "not-a-number"):
                        await client.get(f"/value?v={value}", headers={"X-Aicd-Variant": "a"})
                stats = exp.stats(values=True)
                assert stats["forced"] == 4
                a_stats = stats["variants"]["a"]
                assert a_stats["metric_n"] == 2 and a_stats["metric_sum"] == 4.0
                assert a_stats["metric_values"] == [1.5, 2.5]
                assert router.snapshot()["experiment"]["id"] == "e"
                assert router.stop_experiment() is not None and router.experiment is None
                with pytest.raises(ConfigError, match="runs already"):
                    router.start_experiment(exp)
                    router.start_experiment(exp)

    asyncio.run(main())


def test_experiment_settings_are_checked_and_say_the_sample_size() -> None:
    from aicd.deploy.plan import RolloutPlan, parse_environment

    plan = parse_environment(
        "prod",
        {
            "strategy": "experiment",
            "predictions": {"path": "/predict", "field": "predictions"},
            "experiment": {"key": {"cookie": "uid"}, "weights": {"a": 70, "b": 20, "c": 10},
                           "revisions": {"c": "r3"}, "baseline": 0.9, "effect": 0.05, "duration": "2h"},
        },
        "aicd.yml",
    )  # fmt: skip
    settings = plan.experiment
    assert settings is not None
    assert settings["key"] == {"cookie": "uid"} and settings["revisions"] == {"c": "r3"}
    assert settings["duration"] == 7200.0 and settings["metric"] == "accuracy"
    assert settings["samples_per_variant"] > 686  # three variants: each comparison at alpha / 2
    assert RolloutPlan.from_json(plan.to_json()) == plan
    business = parse_environment(
        "prod",
        {"strategy": "experiment", "experiment": {"metric": "business", "metric_header": "X-Revenue",
                                                  "effect": 1, "sd": 5, "goal": "maximize"}},
        "aicd.yml",
    )  # fmt: skip
    assert business.experiment is not None and business.experiment["samples_per_variant"] == 393
    with pytest.raises(ConfigError) as bad:
        parse_environment(
            "prod",
            {
                "strategy": "experiment",
                "experiment": {"weigths": {}, "key": {"header": "Host"}, "weights": {"a": 50, "b": 60},
                               "metric": "business", "alpha": 2},
            },
            "aicd.yml",
        )  # fmt: skip
    text = str(bad.value)
    assert "unknown key 'weigths'" in text and 'did you mean "weights"' in text
    assert "Host is a header the router handles itself" in text
    assert "summing to 100" in text and "alpha must be a number" in text
    assert "sample size needs effect" in text
    with pytest.raises(ConfigError, match=r"set environments\.prod\.predictions"):
        parse_environment("prod", {"strategy": "experiment"}, "aicd.yml")
    with pytest.raises(ConfigError, match="default metric is live accuracy"):
        RolloutPlan().with_overrides("experiment", None)


def test_the_strategy_reads_each_variants_business_metric_from_a_real_router() -> None:
    from aicd.delivery.experiment_stats import BUSINESS, Design, decide
    from aicd.deploy.strategies.experiment import _variant_data

    async def main() -> None:
        with serve_in_thread("r1") as a, serve_in_thread("r2") as b:
            async with Router() as router:
                router.set_backends(
                    {"r1": [("127.0.0.1", a.port)], "r2": [("127.0.0.1", b.port)]}, {"r1": 50, "r2": 50}
                )
                exp = Experiment("e", VARIANTS, header="X-User", metric_header="X-Value")
                router.start_experiment(exp)
                baseline = router.snapshot()
                async with httpx.AsyncClient(base_url=router.url) as client:
                    for i in range(60):  # the service reports 10 on a's answers, 12 on b's (+/- 1)
                        user = f"u{i}"
                        value = (12 if exp.variant_of(user.encode()).name == "b" else 10) + (i % 3 - 1)
                        r = await client.get(f"/value?v={value}", headers={"X-User": user})
                        assert r.status_code == 200
                design = Design(metric=BUSINESS, effect=1.0, sd=1.0, samples=10)
                data = _variant_data(router, exp, design, baseline)
                assert [d.name for d in data] == ["a", "b"] and sum(d.n for d in data) == 60
                means = {d.name: (d.mean() or 0.0) for d in data}
                assert 9.5 < means["a"] < 10.5 and 11.5 < means["b"] < 12.5, means
                result = decide(design, data, final=True)
                assert result is not None and result.winner == "b" and result.comparisons[0].test == "Welch t"

    asyncio.run(main())


def test_business_values_posted_as_feedback_join_the_variant_that_answered() -> None:
    async def main() -> None:
        with serve_in_thread("r1") as a, serve_in_thread("r2") as b:
            async with Router() as router:
                router.set_backends(
                    {"r1": [("127.0.0.1", a.port)], "r2": [("127.0.0.1", b.port)]}, {"r1": 50, "r2": 50}
                )
                exp = Experiment("e", VARIANTS, header="X-User")
                router.start_experiment(exp)
                async with httpx.AsyncClient(base_url=router.url) as client:
                    ids = {}
                    for user in ("u1", "u2", "u3", "u4"):
                        r = await client.get("/echo", headers={"X-User": user})
                        ids[user] = (r.headers["x-request-id"], r.headers["x-aicd-variant"])
                    values = [{"request_id": rid, "value": 10.0} for rid, _ in ids.values()]
                    values += [
                        {"request_id": ids["u1"][0], "value": 5},  # one value per request
                        {"request_id": "nobody", "value": 1},
                        {"request_id": ids["u2"][0], "value": "much"},
                    ]
                    answer = await client.post("/_aicd/feedback", json={"labels": values})
                    assert answer.status_code == 200, answer.text
                    assert answer.json() == {
                        "joined": 4,
                        "unknown": 2,
                        "expired": 0,
                        "duplicate": 0,
                        "invalid": 1,
                    }
                stats = exp.stats()["variants"]
                for name in ("a", "b"):
                    n = sum(1 for _, v in ids.values() if v == name)
                    assert stats[name]["metric_n"] == n and stats[name]["metric_sum"] == 10.0 * n
                router.stop_experiment()
                async with httpx.AsyncClient(base_url=router.url) as client:  # no experiment: invalid
                    answer = await client.post("/_aicd/feedback", json={"request_id": "x", "value": 1})
                    assert answer.json()["invalid"] == 1

    asyncio.run(main())
