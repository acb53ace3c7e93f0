"""Whether jobs run: when, allow_failure, manual and delayed jobs (real bash jobs)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from aicd.engine import JobStatus
from aicd.pipeline.ir import Need

from .support import job, run_jobs


def test_failure_skips_on_success_and_runs_on_failure_and_always(tmp_path: Path) -> None:
    run = run_jobs(
        tmp_path,
        [
            job("a", "echo a", "exit 4", "echo never", stage="build"),
            job("ok", "echo ok", stage="build"),
            job("next", "echo next", stage="test"),
            job("cleanup", "echo cleanup", stage="test", when="on_failure"),
            job("report", "echo report", stage="deploy", when="always"),
            job("after-skip", "echo after", stage=".post"),
        ],
    )
    assert run.result.status == "failed"
    assert run.statuses() == {
        "a": "failed",
        "ok": "success",
        "next": "skipped",
        "cleanup": "success",
        "report": "success",
        "after-skip": "skipped",
    }
    a = run.result.job("a")
    assert a.outcome is not None and a.outcome.exit_code == 4
    assert run.out("a") == ["a"]  # set -e: the script stopped at the failing line
    assert run.out("next") == []
    assert run.rec.statuses("next") == ["skipped"]


def test_on_failure_is_skipped_when_everything_passed(tmp_path: Path) -> None:
    run = run_jobs(
        tmp_path,
        [job("a", "true", stage="build"), job("cleanup", "echo c", stage="test", when="on_failure")],
    )
    assert run.result.status == "success"
    assert run.statuses() == {"a": "success", "cleanup": "skipped"}


def test_on_failure_with_needs_looks_only_at_its_needs(tmp_path: Path) -> None:
    # the reference runner's case when-on-failure
    run = run_jobs(
        tmp_path,
        [
            job("pre-job", "echo pre", stage=".pre"),
            job("build-job", "exit 1", stage="build"),
            job("test-job", "echo test", stage="test", needs=(Need("build-job"),), when="on_failure"),
            job("deploy-job", "echo deploy", stage="deploy", needs=(Need("pre-job"),), when="on_failure"),
        ],
    )
    assert run.statuses() == {
        "pre-job": "success",
        "build-job": "failed",
        "test-job": "success",
        "deploy-job": "skipped",
    }
    assert run.result.status == "failed"


@pytest.mark.parametrize(("when", "expected"), [("on_success", "skipped"), ("always", "success")])
def test_needs_on_a_skipped_job(tmp_path: Path, when: str, expected: str) -> None:
    run = run_jobs(
        tmp_path,
        [
            job("fail", "exit 1", stage="build"),
            job("mid", "echo mid", stage="test"),  # skipped: build failed
            job("tail", "echo tail", stage="deploy", needs=(Need("mid"),), when=when),
        ],
    )
    assert run.statuses()["tail"] == expected


def test_allow_failure_is_a_warning(tmp_path: Path) -> None:
    run = run_jobs(
        tmp_path,
        [
            job("lenient", "exit 3", stage="build", allow_failure=True),
            job("after", "echo fine", stage="test"),
            job("needs-lenient", "echo too", stage="test", needs=(Need("lenient"),)),
            job("on-fail", "echo no", stage="test", when="on_failure"),
        ],
    )
    assert run.result.status == "success"
    assert run.statuses() == {
        "lenient": "failed",
        "after": "success",
        "needs-lenient": "success",
        "on-fail": "skipped",
    }
    assert run.result.job("lenient").allowed_failure


@pytest.mark.parametrize(("code", "allowed"), [(2, True), (3, True), (5, False)])
def test_allow_failure_exit_codes(tmp_path: Path, code: int, allowed: bool) -> None:
    run = run_jobs(
        tmp_path,
        [
            job("codes", f"exit {code}", stage="build", allow_failure=True, allow_failure_exit_codes=(2, 3)),
            job("after", "echo fine", stage="test"),
        ],
    )
    r = run.result.job("codes")
    assert r.status == JobStatus.FAILED and r.allowed_failure is allowed
    assert run.result.status == ("success" if allowed else "failed")
    assert run.statuses()["after"] == ("success" if allowed else "skipped")


def test_allow_failure_exit_codes_do_not_cover_a_timeout(tmp_path: Path) -> None:
    run = run_jobs(
        tmp_path,
        [job("slow", "sleep 5", timeout_s=0.3, allow_failure=True, allow_failure_exit_codes=(1,))],
    )
    assert run.result.job("slow").allowed_failure is False
    assert run.result.status == "failed"


BLOCKING = dict(when="manual", allow_failure=False)
OPTIONAL = dict(when="manual", allow_failure=True)


def test_unplayed_blocking_manual_job_blocks_what_waits_for_it(tmp_path: Path) -> None:
    run = run_jobs(
        tmp_path,
        [
            job("build", "echo b", stage="build"),
            job("gate", "echo gate", stage="test", **BLOCKING),
            job("deploy", "echo d", stage="deploy"),
            job("notify", "echo n", stage="deploy", when="always"),
            job("needs-gate", "echo x", stage="test", needs=(Need("gate"),)),
            job("free", "echo f", stage="test", needs=(Need("build"),)),
            job("cleanup", "echo c", stage=".post"),
        ],
    )
    assert run.statuses() == {
        "build": "success",
        "gate": "manual",
        "deploy": "created",
        "notify": "created",
        "needs-gate": "created",
        "free": "success",
        "cleanup": "created",
    }
    result = run.result
    assert {r.job.name: r.blocked_by for r in result.blocked} == {
        "deploy": "gate",
        "notify": "gate",
        "needs-gate": "gate",
        "cleanup": "gate",
    }
    assert result.status == "success"  # nothing failed; see the scheduler docstring
    assert run.rec.statuses("gate") == ["manual"]
    assert run.rec.statuses("deploy") == []
    assert any("--manual" in line for line in run.rec.info["deploy"])
    assert run.out("deploy") == []


def test_unplayed_optional_manual_job_does_not_block_stages_but_skips_its_needers(tmp_path: Path) -> None:
    run = run_jobs(
        tmp_path,
        [
            job("maybe", "echo m", stage="build", **OPTIONAL),
            job("next-stage", "echo n", stage="test"),
            job("needs-it", "echo x", stage="test", needs=(Need("maybe"),)),
            job("needs-it-always", "echo y", stage="test", needs=(Need("maybe"),), when="always"),
        ],
    )
    assert run.statuses() == {
        "maybe": "manual",
        "next-stage": "success",
        "needs-it": "skipped",
        "needs-it-always": "success",
    }
    assert run.result.status == "success"


def test_played_manual_job_runs_and_unblocks(tmp_path: Path) -> None:
    run = run_jobs(
        tmp_path,
        [
            job("build", "echo b", stage="build"),
            job("gate", "echo gate", stage="test", **BLOCKING),
            job("deploy", "echo d", stage="deploy"),
        ],
        play_manual=frozenset({"gate"}),
    )
    assert run.statuses() == {"build": "success", "gate": "success", "deploy": "success"}
    assert run.out("gate") == ["gate"]


def test_manual_job_after_a_failure_is_skipped_not_manual(tmp_path: Path) -> None:
    run = run_jobs(
        tmp_path,
        [job("build", "exit 1", stage="build"), job("gate", "echo g", stage="test", **BLOCKING)],
        play_manual=frozenset({"gate"}),
    )
    assert run.statuses() == {"build": "failed", "gate": "skipped"}


def test_delayed_job_waits_its_start_in(tmp_path: Path) -> None:
    t = tmp_path
    run = run_jobs(
        tmp_path,
        [
            job("now", "date +%s.%N > now"),
            job("later", "date +%s.%N > later", when="delayed", start_in_s=0.6),
        ],
    )
    assert run.result.status == "success"
    assert float((t / "work" / "later").read_text()) - float((t / "work" / "now").read_text()) >= 0.5
    assert run.rec.statuses("later") == ["pending", "running", "success"]
    run = run_jobs(tmp_path, [job("later", "echo hi", when="delayed", start_in_s=30)], honour_delays=False)
    assert run.result.status == "success" and run.seconds < 10


def test_delayed_job_after_a_failure_is_skipped(tmp_path: Path) -> None:
    start = time.monotonic()
    run = run_jobs(
        tmp_path,
        [job("b", "exit 1", stage="build"), job("later", "echo x", when="delayed", start_in_s=30)],
    )
    assert run.statuses()["later"] == "skipped"
    assert time.monotonic() - start < 10
