"""From the deployment store to the figures, and `aicd metrics`, on real SQLite and PostgreSQL.

The history and its hand-worked answers are in history.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aicd.errors import ConfigError, NotFoundError
from aicd.reliability.report import build_report, parse_since, parse_time, select_environments
from aicd.store.deployments import open_deploy_store
from aicd_testing import aicd, clean_env
from pg_testing import fresh_database
from reliability import history
from reliability.history import D, H, production


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database holding the history (created and migrated by open_deploy_store)."""
    if request.param == "sqlite":
        location = f"sqlite:///{tmp_path / 'home' / 'aicd.db'}"
        (tmp_path / "home").mkdir()
        yield from _recorded(location)
    else:
        with fresh_database("aicd_rel") as engine:
            yield from _recorded(engine.url.render_as_string(hide_password=False))


def _recorded(location: str) -> Iterator[str]:
    open_deploy_store(location).close()
    history.record(location)
    yield location


def _report(url: str) -> dict[str, Any]:
    with open_deploy_store(url) as store:
        envs = select_environments(store)
        return build_report(
            store, envs, since=history.SINCE, until=history.UNTIL, slo_target=history.SLO
        ).to_json()


def test_report_matches_the_hand_worked_history(url: str) -> None:
    report = _report(url)
    assert [e["environment"] for e in report["environments"]] == ["production", "staging"]
    prod = production(report)
    f = prod["reliability"]
    assert f["window"]["start"] == pytest.approx(history.START)
    assert f["window"]["observed_s"] == pytest.approx(history.OBSERVED)
    assert f["downtime_s"] == pytest.approx(history.DOWNTIME)
    assert f["uptime_s"] == pytest.approx(history.UPTIME)
    assert (f["failures"], f["incidents"], f["open_incidents"]) == (
        history.FAILURES,
        history.INCIDENTS,
        history.OPEN_INCIDENTS,
    )
    assert f["mttf_s"] == pytest.approx(history.MTTF) and f["mttf_lower_bound"] is False
    assert f["restore_s"] == pytest.approx(history.RESTORE)
    assert f["mttr_s"] == pytest.approx(history.MTTR)
    assert f["mtbf_s"] == pytest.approx(history.MTBF)
    assert f["availability"] == pytest.approx(history.AVAILABILITY)
    budget = f["error_budget"]
    assert budget["budget_s"] == pytest.approx(history.BUDGET)
    assert budget["left_s"] == pytest.approx(history.BUDGET_LEFT)
    assert budget["left_fraction"] == pytest.approx(history.BUDGET_LEFT_FRACTION)
    dora = prod["dora"]
    frequency = dora["deployment_frequency"]
    assert frequency["deployments"] == history.DEPLOYMENTS
    assert frequency["value"] == pytest.approx(history.PER_DAY)
    assert (frequency["bucket"], frequency["level"]) == ("Weekly", "high")
    assert dora["lead_time"]["value"] == pytest.approx(history.LEAD_TIME)
    assert (dora["lead_time"]["bucket"], dora["lead_time"]["level"]) == ("One day", "elite")
    failure = dora["change_failure_rate"]
    assert failure["value"] == pytest.approx(history.CHANGE_FAILURE_RATE)
    assert (failure["failed_deployments"], failure["deployments"]) == (2, 6)
    assert (failure["bucket"], failure["level"]) == ("16-45%", "medium")
    restore = dora["time_to_restore"]
    assert restore["value"] == pytest.approx(history.TIME_TO_RESTORE)
    assert (restore["bucket"], restore["level"], restore["unresolved"]) == ("One day", "high", 1)
    # staging never served: nothing observed, no figure (and no error)
    (staging,) = [e for e in report["environments"] if e["environment"] == "staging"]
    assert staging["reliability"]["window"]["observed_s"] == 0
    assert staging["reliability"]["availability"] is None
    assert all(key["value"] is None for name, key in staging["dora"].items() if name != "window")


def test_a_shorter_window_sees_less(url: str) -> None:
    # [day 20, day 28): observed 8 d = 192 h; only d (down 22:00 - open) falls in it
    with open_deploy_store(url) as store:
        envs = select_environments(store, environment="production")
        f = build_report(store, envs, since=history.day(20), until=history.UNTIL).environments[0].reliability
    assert f.window.period_s == pytest.approx(192 * H)
    assert f.downtime_s == pytest.approx(2 * H) and f.failures == 1
    assert f.mttf_s == pytest.approx(190 * H)  # (192 - 2) / 1


def test_cli_json_equals_the_report_and_the_table_reads_well(url: str, tmp_path: Path) -> None:
    env = {**clean_env(), "AICD_DATABASE_URL": url}
    window = ["--since", history.SINCE_ISO, "--until", history.UNTIL_ISO]
    done = aicd(tmp_path, "metrics", *window, "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == _report(url)
    text = aicd(tmp_path, "metrics", *window, env=env)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    (prod_line,) = [line for line in lines if line.startswith("production") and "%" in line and "d" in line][
        :1
    ]
    # observed 26.6 d, availability 633/638 = 99.216 %, downtime 5 h, 3 failures, MTTF 211 h = 8.8 d,
    # MTTR 110 min, budget left -1.81 h = -1h 49m (-57 %)
    for cell in ("26.6 d", "99.216%", "5h 00m", "8.8 d", "1h 50m", "-1h 49m (-57%)"):
        assert cell in prod_line, (cell, prod_line)
    dora_line = [line for line in lines if line.startswith("production")][1]
    for cell in (
        "1.05 deploys/week — high (daily to weekly)",
        "5h 00m — elite (< 1 day)",
        "33% (2/6) — medium (16-45%)",
        "2h 00m — high (< 1 day)",
    ):
        assert cell in dora_line, (cell, dora_line)
    assert any(line.startswith("MTTR: mean time to restore service per failure") for line in lines)
    assert any(
        line.startswith("Time to restore: median per incident (fourkeys). Levels: DORA") for line in lines
    )
    assert lines[0] == "From 2024-01-05 00:00 UTC to 2024-02-04 00:00 UTC; SLO 99.500%"
    staging_line = next(line for line in lines if line.startswith("staging"))
    assert "nothing observed" in staging_line


def test_cli_errors_are_one_line(url: str, tmp_path: Path) -> None:
    env = {**clean_env(), "AICD_DATABASE_URL": url}
    unknown = aicd(tmp_path, "metrics", "--env", "prodution", env=env)
    assert unknown.returncode == 1
    assert "no environment 'prodution'" in unknown.stderr and '"production"' in unknown.stderr
    assert "Traceback" not in unknown.stderr
    bad = aicd(tmp_path, "metrics", "--since", "last tuesday", env=env)
    assert bad.returncode == 2 and "--since 'last tuesday'" in bad.stderr
    slo = aicd(tmp_path, "metrics", "--slo", "99.5", env=env)
    assert slo.returncode == 2 and "SLO target" in slo.stderr


def test_cli_with_nothing_recorded(tmp_path: Path) -> None:
    done = aicd(tmp_path, "metrics", env=clean_env())
    assert done.returncode == 0 and "no environments yet" in done.stdout
    assert not (tmp_path / ".aicd").exists()  # asking created nothing
    named = aicd(tmp_path, "metrics", "--env", "production", env=clean_env())
    assert named.returncode == 1 and "deploy to it first" in named.stderr


def test_parse_window() -> None:
    until = 1_700_000_000.0
    assert parse_since("30d", until) == until - 30 * D
    assert parse_since("12h", until) == until - 12 * H
    assert parse_since("all", until) is None
    assert parse_since("2024-01-05", until) == history.SINCE
    assert parse_time("2024-02-04T00:00:00") == history.UNTIL
    assert parse_time("2024-02-04T01:00:00+01:00") == history.UNTIL
    assert parse_time(str(until)) == until
    for bad in ("nan", "inf", "-5", "3000-01-01", "soon"):
        with pytest.raises(ConfigError):
            parse_time(bad)
    with pytest.raises(ConfigError, match="--since"):
        parse_since("yesterday-ish", until)


def test_unknown_environment_suggests(url: str) -> None:
    with open_deploy_store(url) as store, pytest.raises(NotFoundError, match="did you mean"):
        select_environments(store, environment="stagin")


def test_the_store_and_the_pure_figures_agree_at_the_window_edges(url: str) -> None:
    # An environment serving since day 1; incidents [S - 1 h, S) and [S, S + 1 h) touch at the
    # window's start S: one episode that began before the window, so no failure in it. One more
    # opens exactly at the window's end U: outside it.
    from aicd.reliability.figures import compute_reliability
    from aicd.reliability.inputs import Incident
    from aicd.reliability.window import observe

    start, end = history.day(12), history.day(14)
    store = open_deploy_store(url)
    try:
        edge = store.ensure_environment("edge", tier="production")
        history._deploy(store, url, edge.id, 1, history.day(1, 9), history.day(1, 10), "succeeded", H)
        for opened, resolved in ((start - H, start), (start, start + H), (end, end + H)):
            incident = store.open_incident(
                edge.id, "down", "health checks fail", opened_by="agent", at=opened
            )
            store.resolve_incident(incident.id, resolved_by="agent", at=resolved)
        every = [
            Incident(opened_at=r.opened_at, resolved_at=r.resolved_at, kind=r.kind)
            for r in store.list_incidents(environment="edge")
        ]
        for since, until in ((start, end), (start - H, end), (start + H, end), (start, end + H)):
            [env] = select_environments(store, environment="edge")
            stored = build_report(store, [env], since=since, until=until).environments[0].reliability
            window = observe(since=since, until=until, service_start=history.day(1, 10))
            pure = compute_reliability(every, window)
            assert stored.to_json() == pure.to_json(), (since - start, until - end)
        [env] = select_environments(store, environment="edge")
        at_start = build_report(store, [env], since=start, until=end).environments[0].reliability
        assert (at_start.failures, at_start.downtime_s) == (0, H)
        assert (
            build_report(store, [env], since=start, until=end + H).environments[0].reliability.failures == 1
        )
    finally:
        store.close()
