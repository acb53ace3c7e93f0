"""MTTF, MTTR, MTBF, availability and error budget on recorded histories worked out by hand.

Times are in hours from an arbitrary origin (H = 3600 s); each test shows its arithmetic.
"""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aicd.errors import ConfigError
from aicd.reliability import Incident, compute_reliability, observe
from aicd.reliability.window import merge, union_length

H = 3600.0


def _down(opened_h: float, resolved_h: float | None, kind: str = "down") -> Incident:
    return Incident(opened_h * H, None if resolved_h is None else resolved_h * H, kind)


def test_two_separate_outages() -> None:
    window = observe(since=0, until=100 * H, service_start=0)
    incidents = [_down(10, 12), _down(50, 51, "slo")]
    f = compute_reliability(incidents, window, slo_target=0.99)
    # downtime = (12-10) + (51-50) = 3 h; uptime = 100 - 3 = 97 h; 2 failures
    assert f.downtime_s == pytest.approx(3 * H)
    assert f.uptime_s == pytest.approx(97 * H)
    assert (f.failures, f.incidents, f.open_incidents) == (2, 2, 0)
    assert f.mttf_s == pytest.approx(48.5 * H)  # 97 / 2
    assert f.mttr_s == pytest.approx(1.5 * H)  # 3 / 2
    assert f.mtbf_s == pytest.approx(50 * H)  # 48.5 + 1.5
    assert not f.mttf_lower_bound and not f.mtbf_lower_bound
    assert f.availability == pytest.approx(0.97)  # 97 / 100
    # budget = (1 - 0.99) * 100 h = 1 h; left = 1 - 3 = -2 h, i.e. -200 % of the budget
    assert f.error_budget.budget_s == pytest.approx(1 * H)
    assert f.error_budget.spent_s == pytest.approx(3 * H)
    assert f.error_budget.left_s == pytest.approx(-2 * H)
    assert f.error_budget.left_fraction == pytest.approx(-2.0)


def test_no_failure_reports_mttf_as_a_lower_bound() -> None:
    window = observe(since=0, until=720 * H, service_start=0)  # 30 days
    f = compute_reliability([], window, slo_target=0.995)
    # no failure: MTTF >= the whole 720 h observed, not infinity; MTTR undefined
    assert f.failures == 0
    assert f.mttf_s == pytest.approx(720 * H) and f.mttf_lower_bound
    assert f.mtbf_s == pytest.approx(720 * H) and f.mtbf_lower_bound
    assert f.mttr_s is None
    assert f.availability == 1.0
    # budget = 0.005 * 720 h = 3.6 h, all of it left
    assert f.error_budget.budget_s == pytest.approx(3.6 * H)
    assert f.error_budget.left_s == pytest.approx(3.6 * H)
    assert f.error_budget.left_fraction == pytest.approx(1.0)


def test_incident_still_open_at_the_window_end() -> None:
    window = observe(since=0, until=100 * H, service_start=0)
    f = compute_reliability([_down(90, None)], window, slo_target=0.9)
    # open since 90 h: it runs to `until`, so downtime = 100 - 90 = 10 h; uptime = 90 h
    assert f.downtime_s == pytest.approx(10 * H)
    assert (f.failures, f.open_incidents) == (1, 1)
    assert f.mttf_s == pytest.approx(90 * H)  # 90 / 1
    assert f.mttr_s == pytest.approx(10 * H)  # 10 / 1
    assert f.mtbf_s == pytest.approx(100 * H)
    assert f.availability == pytest.approx(0.9)
    # budget = 0.1 * 100 = 10 h, exactly spent
    assert f.error_budget.left_s == pytest.approx(0.0, abs=1e-6)
    # resolved after the window's end: still open at the end, counted up to `until` only
    g = compute_reliability([_down(90, 130)], window)
    assert g.downtime_s == pytest.approx(10 * H) and g.open_incidents == 1


def test_overlapping_incidents_are_one_failure_and_downtime_counted_once() -> None:
    window = observe(since=0, until=100 * H, service_start=0)
    incidents = [
        _down(10, 14),  # health checks: down 10-14
        _down(12, 16, "slo"),  # the SLO monitor sees the same outage 12-16
        _down(15, 17, "declared"),  # someone declares it at 15, closes at 17
        _down(20, 21),  # a separate outage
    ]
    f = compute_reliability(incidents, window)
    # union: [10, 17) = 7 h, plus [20, 21) = 1 h -> 8 h (summing would give 4+4+2+1 = 11 h)
    assert f.downtime_s == pytest.approx(8 * H)
    # episodes: {10-17} and {20-21} -> 2 failures from 4 incidents
    assert (f.failures, f.incidents) == (2, 4)
    assert f.mttf_s == pytest.approx(46 * H)  # (100 - 8) / 2
    assert f.mttr_s == pytest.approx(4 * H)  # 8 / 2
    assert f.mtbf_s == pytest.approx(50 * H)
    assert f.availability == pytest.approx(0.92)


def test_touching_incidents_are_one_episode() -> None:
    window = observe(since=0, until=10 * H, service_start=0)
    f = compute_reliability([_down(1, 2), _down(2, 3, "slo")], window)
    # one ends at 2 h when the next begins: no uptime between, one failure of 2 h
    assert f.failures == 1 and f.downtime_s == pytest.approx(2 * H)


def test_change_failure_is_a_failure_without_downtime() -> None:
    window = observe(since=0, until=100 * H, service_start=0)
    incidents = [_down(30, 30.5, "change_failure"), _down(60, 62)]
    f = compute_reliability(incidents, window)
    # the canary's bad version served a share of traffic 30-30.5 h: a failure, not downtime
    assert f.failures == 2
    assert f.downtime_s == pytest.approx(2 * H)  # only the down incident
    assert f.mttf_s == pytest.approx(49 * H)  # (100 - 2) / 2
    # MTTR: the time to restore service per failure, the change failure's until its rollback
    # finished: (0.5 + 2) / 2 = 1.25 h; MTBF = MTTF + MTTR still
    assert f.restore_s == pytest.approx(2.5 * H)
    assert f.mttr_s == pytest.approx(1.25 * H)
    assert f.mtbf_s == pytest.approx(50.25 * H)
    assert f.availability == pytest.approx(0.98)  # real downtime only
    # a change failure that brought the service down too is one episode, the down time counted once
    both = compute_reliability([_down(60, 61, "change_failure"), _down(60.5, 62)], window)
    assert both.failures == 1 and both.downtime_s == pytest.approx(1.5 * H)
    assert both.mttr_s == pytest.approx(2 * H)  # the episode 60-62 h


def test_mttr_and_time_to_restore_agree_on_one_change_failure() -> None:
    # The demo's production: one canary rolled back 2 s after it took traffic, no downtime.
    from aicd.reliability.dora import compute_dora

    window = observe(since=0, until=1 * H, service_start=0)
    incidents = [Incident(600.0, 602.0, "change_failure")]
    f = compute_reliability(incidents, window)
    restore = compute_dora([], incidents, window).time_to_restore
    assert f.failures == 1 and f.downtime_s == 0 and f.availability == 1.0
    assert f.mttr_s == pytest.approx(2.0) and restore.value == pytest.approx(2.0)
    assert f.mtbf_s == pytest.approx(f.mttf_s + f.mttr_s)  # (3600 - 0) / 1 + 2


def test_nothing_counts_before_the_first_deployment() -> None:
    # asked for [0, 100 h); the environment was first deployed at 40 h: observed 60 h
    window = observe(since=0, until=100 * H, service_start=40 * H)
    assert window.start == 40 * H and window.period_s == 60 * H
    f = compute_reliability([_down(70, 73)], window, slo_target=0.95)
    assert f.uptime_s == pytest.approx(57 * H)  # 60 - 3
    assert f.availability == pytest.approx(0.95)  # 57 / 60
    assert f.error_budget.budget_s == pytest.approx(3 * H)  # 0.05 * 60
    assert f.error_budget.left_s == pytest.approx(0.0, abs=1e-6)
    # no `since` (all time): observed from the first deployment
    assert observe(since=None, until=100 * H, service_start=40 * H).start == 40 * H


def test_incident_begun_before_the_window() -> None:
    window = observe(since=10 * H, until=100 * H, service_start=0)
    f = compute_reliability([_down(5, 12)], window)
    # only [10, 12) is inside: 2 h of downtime, but the failure began before the window
    assert f.downtime_s == pytest.approx(2 * H)
    assert (f.failures, f.incidents) == (0, 0)
    assert f.mttf_s == pytest.approx(88 * H) and f.mttf_lower_bound  # uptime 90 - 2
    assert f.mttr_s is None
    assert f.availability == pytest.approx(88 / 90)


def test_empty_window() -> None:
    never = observe(since=0, until=100 * H, service_start=None)  # never deployed
    at_the_end = observe(since=0, until=100 * H, service_start=100 * H)
    zero = observe(since=50 * H, until=50 * H, service_start=0)
    for window in (never, at_the_end, zero):
        assert window.empty and window.period_s == 0
        f = compute_reliability([_down(1, 2)], window)
        assert (f.uptime_s, f.downtime_s, f.failures) == (0, 0, 0)
        assert f.mttf_s is None and f.mttr_s is None and f.mtbf_s is None
        assert not f.mttf_lower_bound
        assert f.availability is None
        assert f.error_budget.budget_s == 0 and f.error_budget.left_fraction is None
        assert f.to_json()["window"]["observed_s"] == 0


def test_bad_inputs_are_config_errors() -> None:
    window = observe(since=0, until=H, service_start=0)
    for target in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ConfigError, match="SLO target"):
            compute_reliability([], window, slo_target=target)
    with pytest.raises(ConfigError, match="starts after it ends"):
        observe(since=2 * H, until=H, service_start=0)


def test_to_json_is_plain() -> None:
    window = observe(since=0, until=100 * H, service_start=0)
    data = compute_reliability([_down(10, 12)], window, slo_target=0.99).to_json()
    assert data["failures"] == 1 and data["downtime_s"] == pytest.approx(2 * H)
    assert data["mttf_s"] == pytest.approx(98 * H) and data["mttf_lower_bound"] is False
    assert data["availability"] == pytest.approx(0.98)
    assert data["error_budget"]["target"] == 0.99
    assert set(data["window"]) == {"since", "until", "start", "observed_s"}


@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 20)), max_size=12))
def test_union_length_matches_counting_unit_cells(spans: list[tuple[int, int]]) -> None:
    intervals = [(float(a), float(a + n)) for a, n in spans]
    covered = {cell for a, n in spans for cell in range(a, a + n)}
    assert union_length(intervals) == len(covered)
    merged = merge(intervals)
    assert all(prev[1] < nxt[0] for prev, nxt in pairwise(merged))
