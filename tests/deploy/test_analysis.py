"""Canary analysis over the router's metrics: thresholds, judge and drift on real snapshots."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import httpx
import numpy as np
import pytest
from router_servers import BackendServer, Handler

from aicd.delivery.judge import HIGH, NODATA, NODATA_FAIL, JudgeConfig, MetricConfig
from aicd.delivery.judge_config import AnalysisConfig, analysis_config
from aicd.delivery.thresholds import FAILED, INCONCLUSIVE, RUNNING, SUCCESSFUL, threshold_spec
from aicd.deploy.analysis import (
    AnalysisReport,
    CanaryAnalysis,
    MeasurementRecord,
    default_analysis,
)
from aicd.deploy.router.metrics import FieldCount, RouterMetrics
from aicd.deploy.router.router import Router
from aicd.errors import ConfigError

STEP = 0.25  # seconds between ticks, as the agent calls them


class Traffic:
    """Synthetic traffic recorded into a real RouterMetrics (its snapshot is the real format)."""

    def __init__(self, seed: int = 7, field_count: FieldCount | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.metrics = RouterMetrics(field_count=field_count)

    def send(self, revision: str, n: int, *, error_rate: float = 0.01, latency_ms: float = 20.0) -> None:
        latencies = self.rng.lognormal(np.log(latency_ms), 0.3, n)
        errors = self.rng.random(n) < error_rate
        for latency, error in zip(latencies, errors, strict=True):
            self.metrics.record(revision, 500 if error else 200, float(latency))

    def run(
        self,
        analysis: CanaryAnalysis,
        start: float,
        seconds: float,
        *,
        stable_rps: int = 80,
        canary_rps: int = 40,
        **canary: float,
    ) -> list[MeasurementRecord]:
        """`seconds` of traffic from `start`, ticking the analysis every STEP; the records taken."""
        records = []
        for i in range(1, round(seconds / STEP) + 1):
            self.send("stable", round(stable_rps * STEP))
            self.send("canary", round(canary_rps * STEP), **canary)
            records += analysis.tick(self.metrics.snapshot(), start + i * STEP)
        return records


def start(traffic: Traffic, config: AnalysisConfig | None = None, **kwargs: float) -> CanaryAnalysis:
    return CanaryAnalysis(
        config or default_analysis(),
        stable="stable",
        canary="canary",
        baseline=traffic.metrics.snapshot(),
        started_at=0.0,
        **kwargs,
    )


def config_of(section: dict[str, object]) -> AnalysisConfig:
    return analysis_config(section, "aicd.yml")


def test_a_healthy_canary_with_background_errors_passes() -> None:
    traffic = Traffic()
    analysis = start(traffic)
    records = traffic.run(analysis, 0.0, 30.0)
    assert [r.at for r in records] == [5.0, 10.0, 15.0, 20.0, 25.0, 30.0]
    assert all(r.metric == "success_rate" and r.phase == SUCCESSFUL for r in records)
    assert analysis.failed_early() is None
    assert analysis.thresholds_phase().phase == RUNNING  # no count: runs until stopped
    report = analysis.final(traffic.metrics.snapshot(), 30.0)
    assert report.passed, report.reason
    assert (report.stable_requests, report.canary_requests) == (2400, 1200)
    assert report.thresholds.phase == SUCCESSFUL
    assert report.judge is not None and report.judge.verdict == "pass"
    assert report.drift is None  # no predictions counted
    assert report.summary().startswith("canary analysis passed: thresholds Successful")


def test_twenty_percent_errors_fail_the_thresholds_and_the_judge() -> None:
    traffic = Traffic()
    analysis = start(traffic)
    records = traffic.run(analysis, 0.0, 10.0, error_rate=0.2)
    assert [r.phase for r in records] == [FAILED, FAILED]
    assert records[0].value is not None and 0.7 < records[0].value < 0.9
    early = analysis.failed_early()
    assert early is not None and early.startswith("success_rate Failed: 2 failed measurements")
    assert "failure_limit 1" in early and "'result >= 0.95'" in early
    assert traffic.run(analysis, 10.0, 10.0, error_rate=0.2) == []  # a lost run measures no more
    report = analysis.final(traffic.metrics.snapshot(), 20.0)
    assert not report.passed
    assert report.thresholds.phase == FAILED
    assert report.judge is not None and report.judge.verdict == "fail"
    errors = next(m for m in report.judge.metrics if m.name == "errors")
    assert errors.classification == HIGH and not errors.critical_failure  # the default: not critical
    assert "success_rate Failed" in report.reason and "errors High: canary 2" in report.reason
    assert "% errors of 800 requests vs stable" in report.reason


def test_three_times_the_latency_fails_the_judge_alone() -> None:
    traffic = Traffic()
    analysis = start(traffic)
    traffic.run(analysis, 0.0, 10.0, latency_ms=60.0)
    assert analysis.failed_early() is None
    report = analysis.final(traffic.metrics.snapshot(), 10.0)
    assert not report.passed
    assert report.thresholds.phase == SUCCESSFUL
    assert report.judge is not None
    latency = next(m for m in report.judge.metrics if m.name == "latency_ms")
    assert latency.classification == HIGH and not latency.critical_failure
    assert 2.5 < latency.effect < 3.5
    assert report.reason.startswith("judge fail (score 50, pass >= 95): latency_ms High: canary mean ")
    assert " ms vs stable mean " in report.reason


def test_a_canary_slower_by_a_tenth_passes_within_the_allowed_increase() -> None:
    traffic = Traffic()
    analysis = start(traffic)
    traffic.run(analysis, 0.0, 10.0, latency_ms=22.0)
    report = analysis.final(traffic.metrics.snapshot(), 10.0)
    assert report.passed, report.reason
    assert report.judge is not None
    latency = next(m for m in report.judge.metrics if m.name == "latency_ms")
    assert "within the allowed increase 1.2" in latency.reason


def test_a_marginal_judgement_passes_with_a_note() -> None:
    traffic = Traffic()
    metrics = [{"name": "latency_ms", "direction": "increase", "weight": 20}, {"name": "errors"}]
    analysis = start(traffic, config_of({"metrics": metrics}))
    traffic.run(analysis, 0.0, 5.0, latency_ms=60.0)
    report = analysis.final(traffic.metrics.snapshot(), 5.0)
    assert report.passed, report.reason
    assert report.judge is not None and (report.judge.verdict, report.judge.score) == ("marginal", 80.0)
    assert report.notes == ("judge marginal (score 80, pass >= 95): marginal, passed: latency_ms High",)


def test_only_traffic_after_the_baseline_counts() -> None:
    traffic = Traffic()
    traffic.send("stable", 3000)
    traffic.send("canary", 3000, error_rate=0.5, latency_ms=200.0)  # a bad past: before the analysis
    analysis = start(traffic)
    records = traffic.run(analysis, 0.0, 10.0)
    assert [r.phase for r in records] == [SUCCESSFUL, SUCCESSFUL]
    report = analysis.final(traffic.metrics.snapshot(), 10.0)
    assert report.passed, report.reason
    assert (report.stable_requests, report.canary_requests) == (800, 400)
    assert report.judge is not None
    latency = next(m for m in report.judge.metrics if m.name == "latency_ms")
    errors = next(m for m in report.judge.metrics if m.name == "errors")
    assert (latency.stable.count, latency.canary.count) == (800, 400)  # the reservoir's last ones only
    assert latency.canary.max < 100 and errors.canary.count == 400


def test_a_new_canary_missing_from_the_baseline_and_a_reset_router_start_at_zero() -> None:
    traffic = Traffic()
    traffic.send("stable", 500)
    analysis = start(traffic)  # no canary in the baseline yet
    traffic.metrics.reset()  # counters restarted: now below the baseline's
    traffic.run(analysis, 0.0, 5.0)
    report = analysis.final(traffic.metrics.snapshot(), 5.0)
    assert (report.stable_requests, report.canary_requests) == (400, 200)


def test_measurements_are_taken_only_when_due() -> None:
    traffic = Traffic()
    spec = threshold_spec(
        {
            "name": "requests",
            "interval": "5s",
            "initial_delay": "2s",
            "count": 3,
            "success_condition": "result >= 0",
        },
        "test",
    )
    rate = threshold_spec({"name": "request_rate", "interval": 4, "success_condition": "result >= 0"}, "test")
    analysis = start(traffic, AnalysisConfig(thresholds=(spec, rate)))
    records = traffic.run(analysis, 0.0, 16.0, canary_rps=40)
    taken = [(r.metric, r.at, r.value) for r in records]
    # requests: the window opens when the delay ends (2 s): 10 requests per 0.25 s tick after it
    assert taken == [
        ("request_rate", 4.0, 40.0),
        ("requests", 7.0, 200.0),
        ("request_rate", 8.0, 40.0),
        ("requests", 12.0, 200.0),
        ("request_rate", 12.0, 40.0),
        ("request_rate", 16.0, 40.0),
    ]
    phases = {m.name: m.phase for m in analysis.thresholds_phase().metrics}
    assert phases == {"requests": RUNNING, "request_rate": RUNNING}
    # a late tick takes one measurement, not a burst, and the schedule restarts from it
    traffic.send("canary", 100)
    late = analysis.tick(traffic.metrics.snapshot(), 40.0)
    assert [(r.metric, r.value) for r in late] == [("requests", 260.0), ("request_rate", 100 / 24)]
    assert analysis.tick(traffic.metrics.snapshot(), 43.0) == []
    assert [r.metric for r in analysis.tick(traffic.metrics.snapshot(), 44.0)] == ["request_rate"]
    phases = {m.name: m.phase for m in analysis.thresholds_phase().metrics}
    assert phases == {"requests": SUCCESSFUL, "request_rate": RUNNING}  # count 3 reached: done
    assert analysis.tick(traffic.metrics.snapshot(), 60.0)[0].metric == "request_rate"


def test_interval_override_and_windows_without_requests() -> None:
    traffic = Traffic()
    config = config_of(
        {"thresholds": [{"name": "p99_latency_ms", "interval": "1m", "success_condition": "result < 100"}]}
    )
    analysis = start(traffic, config, interval_override=1.0)
    records = traffic.run(analysis, 0.0, 3.0)
    assert [r.at for r in records] == [1.0, 2.0, 3.0]
    assert all(r.value is not None and 20 < r.value < 100 for r in records)
    # windows in which nothing reached the canary are skipped: no evidence, not an Error
    assert analysis.tick(traffic.metrics.snapshot(), 4.0) == []
    assert analysis.tick(traffic.metrics.snapshot(), 60.0) == []
    assert analysis.failed_early() is None
    assert [m.count for m in analysis.thresholds_phase().metrics] == [3]


def test_an_inconclusive_check_fails_the_analysis() -> None:
    traffic = Traffic()
    config = config_of(
        {
            "thresholds": [
                {
                    "name": "mean_latency_ms",
                    "interval": 1,
                    "success_condition": "result < 10",
                    "failure_condition": "result > 100",
                }
            ]
        }
    )
    analysis = start(traffic, config)
    records = traffic.run(analysis, 0.0, 1.0)
    assert [r.phase for r in records] == [INCONCLUSIVE]
    assert (analysis.failed_early() or "").startswith("mean_latency_ms Inconclusive: 1 inconclusive")
    report = analysis.final(traffic.metrics.snapshot(), 1.0)
    assert not report.passed and report.reason.startswith("mean_latency_ms Inconclusive")
    assert report.judge is None  # no judge metrics configured: the judge does not run


def predictions(traffic: Traffic, revision: str, shares: dict[int, int]) -> None:
    for cls, n in shares.items():
        for _ in range(n):
            traffic.metrics.record_body(revision, json.dumps({"predictions": [cls]}).encode())


def test_a_shift_of_the_predicted_classes_fails_and_a_steady_one_passes() -> None:
    field = FieldCount("/predict", "predictions")
    traffic = Traffic(field_count=field)
    predictions(traffic, "canary", {2: 500})  # before the baseline: ignored
    analysis = start(traffic)
    traffic.run(analysis, 0.0, 5.0)
    predictions(traffic, "stable", {0: 100, 1: 100, 2: 100})
    predictions(traffic, "canary", {0: 90, 1: 10, 2: 50})
    report = analysis.final(traffic.metrics.snapshot(), 5.0)
    assert not report.passed
    assert report.drift is not None and report.drift.verdict == "fail"
    assert report.drift.classes == {"0": (100, 90), "1": (100, 10), "2": (100, 50)}
    assert report.reason.startswith("predictions: the canary's predictions drifted: PSI ")

    steady = Traffic(field_count=field)
    analysis = start(steady)
    steady.run(analysis, 0.0, 5.0)
    predictions(steady, "stable", {0: 100, 1: 100, 2: 100})
    predictions(steady, "canary", {0: 52, 1: 49, 2: 50})
    report = analysis.final(steady.metrics.snapshot(), 5.0)
    assert report.passed, report.reason
    assert report.drift is not None and report.drift.verdict == "pass"
    assert report.reason.endswith("predictions pass")


def test_drift_on_too_few_predictions_is_only_a_note() -> None:
    traffic = Traffic(field_count=FieldCount("/predict", "predictions"))
    analysis = start(traffic)
    traffic.run(analysis, 0.0, 5.0)
    predictions(traffic, "stable", {0: 100, 1: 100})
    predictions(traffic, "canary", {1: 20})
    report = analysis.final(traffic.metrics.snapshot(), 5.0)
    assert report.passed, report.reason
    assert report.drift is not None and report.drift.verdict == "fail"
    assert any("fewer than 50 predictions on a side (20)" in note for note in report.notes)


def test_unknown_metric_names() -> None:
    traffic = Traffic()
    config = config_of({"thresholds": [{"name": "sucess_rate", "success_condition": "result > 0.9"}]})
    with pytest.raises(ConfigError) as caught:
        start(traffic, config)
    message = str(caught.value)
    assert "the router measures no 'sucess_rate' (did you mean \"success_rate\"?)" in message
    assert "known: success_rate, error_rate, p50_latency_ms, p95_latency_ms" in message
    assert message.startswith("aicd.yml: thresholds:")
    twice = {"name": "error_rate", "success_condition": "result < 0.1"}
    with pytest.raises(ConfigError, match="'error_rate' is checked twice"):
        start(traffic, config_of({"thresholds": [twice, twice]}))
    with pytest.raises(ConfigError, match="same revision"):
        CanaryAnalysis(default_analysis(), stable="a", canary="a", baseline={}, started_at=0)
    # the judge: an unknown metric is Nodata with a reason, not an error
    judge = JudgeConfig(metrics=(MetricConfig("latncy_ms"), MetricConfig("errors")))
    analysis = start(traffic, AnalysisConfig(judge=judge))
    traffic.run(analysis, 0.0, 5.0)
    report = analysis.final(traffic.metrics.snapshot(), 5.0)
    assert report.judge is not None
    unknown = report.judge.metrics[0]
    assert unknown.classification == NODATA
    assert unknown.reason.startswith("the router measures no 'latncy_ms' (did you mean \"latency_ms\"?)")
    assert report.passed and "not counted as a failure" in report.notes[0]  # half Nodata: score 0


def test_too_little_data_is_no_failure_unless_must_have_data() -> None:
    traffic = Traffic()
    analysis = start(traffic)
    traffic.run(analysis, 0.0, 0.5, canary_rps=8)  # 2 canary requests in all
    report = analysis.final(traffic.metrics.snapshot(), 0.5)
    assert report.passed, report.reason
    assert report.judge is not None and {m.classification for m in report.judge.metrics} == {NODATA}
    assert report.thresholds.phase == SUCCESSFUL  # stopped before any measurement
    config = config_of({"metrics": [{"name": "latency_ms", "must_have_data": True}]})
    analysis = start(traffic, config)
    traffic.run(analysis, 0.0, 0.5, canary_rps=8)
    report = analysis.final(traffic.metrics.snapshot(), 0.5)
    assert not report.passed
    assert report.judge is not None and report.judge.metrics[0].classification == NODATA_FAIL
    assert "latency_ms NodataFailMetric (too few samples: stable has 40, canary 4" in report.reason
    # a critical metric without data fails the analysis, as Kayenta fails the canary
    config = config_of({"metrics": [{"name": "latency_ms", "critical": True}, {"name": "errors"}]})
    analysis = start(traffic, config)
    traffic.run(analysis, 0.0, 0.5, canary_rps=8)
    report = analysis.final(traffic.metrics.snapshot(), 0.5)
    assert not report.passed
    assert report.judge is not None and report.judge.metrics[0].critical_failure
    assert "latency_ms NodataFailMetric" in report.reason
    assert "critical metric must have data" in report.reason


def test_configured_weights_are_folded_into_the_groups() -> None:
    config = config_of({"metrics": [{"name": "latency_ms", "weight": 70}, {"name": "errors"}]})
    analysis = start(Traffic(), config)
    assert analysis.judge_config.group_weights == {"latency_ms": 70.0}
    bad = config_of({"groups": {"latency": 50}, "metrics": [{"name": "latency_ms"}]})
    with pytest.raises(ConfigError, match="the group 'latency' has a weight but no metric is in it"):
        start(Traffic(), bad)


def test_the_report_goes_through_json_unchanged() -> None:
    traffic = Traffic(field_count=FieldCount("/predict", "predictions"))
    default = default_analysis()
    judge = replace(
        default.judge,
        metrics=(*default.judge.metrics, MetricConfig("x")),
        group_weights={"latency": 40.0, "errors": 40.0},
    )
    analysis = start(traffic, replace(default, judge=judge))
    records = traffic.run(analysis, 0.0, 10.0, error_rate=0.2)
    predictions(traffic, "stable", {0: 60, 1: 60})
    predictions(traffic, "canary", {0: 60})
    report = analysis.final(traffic.metrics.snapshot(), 10.0)
    doc = report.to_json()
    text = json.dumps(doc, allow_nan=False)  # NaN (the Nodata metric's summaries) became null
    assert json.loads(text) == doc
    assert doc["passed"] is False and doc["reason"] == report.reason
    assert doc["thresholds"]["phase"] == FAILED
    assert [m["phase"] for m in doc["thresholds"]["metrics"][0]["measurements"]] == [FAILED, FAILED]
    assert {m["name"]: m["classification"] for m in doc["judge"]["metrics"]} == {
        "latency_ms": "Pass",
        "errors": "High",
        "x": "Nodata",
    }
    assert doc["judge"]["metrics"][2]["canary"]["mean"] is None
    assert doc["drift"]["verdict"] == "fail" and doc["drift"]["classes"]["1"] == {"stable": 60, "canary": 0}
    assert (doc["stable_requests"], doc["canary_requests"]) == (800, 400)
    record = records[0].to_json()
    assert json.loads(json.dumps(record, allow_nan=False)) == record
    assert set(record) == {"metric", "value", "phase", "reason", "at"}
    assert isinstance(report, AnalysisReport) and report.summary().startswith("canary analysis failed: ")


# -- the real router -----------------------------------------------------------------------------


@contextmanager
def slow_backend(name: str, delay: float) -> Iterator[BackendServer]:
    """A router_servers backend whose every answer waits `delay` seconds first."""

    class Slow(Handler):
        def do_GET(self) -> None:
            time.sleep(delay)
            self.route()

    server = BackendServer(name)
    server.RequestHandlerClass = Slow
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_real_router_with_a_canary_three_times_slower_fails_on_latency() -> None:
    async def main() -> AnalysisReport:
        with slow_backend("stable", 0.01) as stable, slow_backend("canary", 0.03) as canary:
            async with Router() as router:
                router.set_backends(
                    {"stable": [("127.0.0.1", stable.port)], "canary": [("127.0.0.1", canary.port)]},
                    {"stable": 50, "canary": 50},
                )
                async with httpx.AsyncClient(base_url=router.url) as client:
                    await client.get("/echo")  # warm the connections up: before the baseline
                    await client.get("/echo")
                    clock = time.monotonic
                    analysis = CanaryAnalysis(
                        default_analysis(),
                        stable="stable",
                        canary="canary",
                        baseline=router.snapshot(),
                        started_at=clock(),
                        interval_override=0.2,
                    )

                    async def worker() -> None:
                        for _ in range(50):
                            assert (await client.get("/echo")).status_code == 200

                    load = asyncio.gather(*(worker() for _ in range(6)))
                    records: list[MeasurementRecord] = []
                    while not load.done():
                        records += analysis.tick(router.snapshot(), clock())
                        await asyncio.sleep(0.05)
                    await load
                    assert records and all(r.phase == SUCCESSFUL for r in records)
                    return analysis.final(router.snapshot(), clock())

    report = asyncio.run(main())
    assert not report.passed
    assert report.stable_requests + report.canary_requests == 300
    assert report.thresholds.phase == SUCCESSFUL
    assert report.judge is not None
    latency = next(m for m in report.judge.metrics if m.name == "latency_ms")
    assert latency.classification == HIGH, latency.reason
    # sleeps of 10 and 30 ms, plus what the router and the client add (more on a loaded machine)
    assert 1.5 < latency.effect < 4.0
    assert "latency_ms High: canary mean" in report.reason
