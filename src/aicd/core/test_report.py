"""A pipeline's test report, as GitLab's API gives it: one suite per job with JUnit reports.

Counts come from the job rows; the test cases from the JUnit XML files the
job kept (run_dir/reports/<job id>/). A file that is not valid XML is left out.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from aicd.executors.artifacts import reports_dir
from aicd.store.records import JobRecord

MAX_CASES = 5000  # per suite; more are counted but not listed
MAX_OUTPUT = 4096  # characters of a case's failure text kept


@dataclass(frozen=True)
class TestCase:
    name: str
    classname: str
    status: str  # success, failed, error, skipped
    execution_time: float
    system_output: str | None = None


@dataclass
class TestSuite:
    name: str  # the job's name
    job_id: int
    total_count: int = 0
    success_count: int = 0
    failed_count: int = 0
    skipped_count: int = 0
    error_count: int = 0
    total_time: float = 0.0
    test_cases: list[TestCase] = field(default_factory=list)


@dataclass
class TestReport:
    total_count: int = 0
    success_count: int = 0
    failed_count: int = 0
    skipped_count: int = 0
    error_count: int = 0
    total_time: float = 0.0
    test_suites: list[TestSuite] = field(default_factory=list)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _float(text: str | None) -> float:
    try:
        return float(text) if text else 0.0
    except ValueError:
        return 0.0


def read_cases(folder: Path) -> list[TestCase]:
    cases: list[TestCase] = []
    if not folder.is_dir():
        return cases
    for path in sorted(folder.rglob("*.xml")):
        try:
            root = ET.fromstring(path.read_bytes())
        except (ET.ParseError, OSError):
            continue
        for case in root.iter():
            if _local(case.tag) != "testcase":
                continue
            status, output = "success", None
            for child in case:
                kind = _local(child.tag)
                if kind in ("failure", "error", "skipped"):
                    status = {"failure": "failed", "error": "error", "skipped": "skipped"}[kind]
                    text = (child.get("message") or "") + ("\n" + child.text if child.text else "")
                    output = text.strip()[:MAX_OUTPUT] or None
                    break
            cases.append(
                TestCase(
                    name=case.get("name", ""),
                    classname=case.get("classname", ""),
                    status=status,
                    execution_time=_float(case.get("time")),
                    system_output=output,
                )
            )
    return cases


def build_report(run_dir: Path, jobs: list[JobRecord]) -> TestReport:
    """The report of the latest attempt of each job that has test results."""
    report = TestReport()
    for job in jobs:
        if job.retried or job.tests_total is None:
            continue
        cases = read_cases(reports_dir(run_dir, job.id))
        suite = TestSuite(
            name=job.name,
            job_id=job.id,
            total_count=job.tests_total,
            success_count=job.tests_passed or 0,
            failed_count=sum(1 for c in cases if c.status == "failed") if cases else job.tests_failed or 0,
            error_count=sum(1 for c in cases if c.status == "error"),
            skipped_count=job.tests_skipped or 0,
            total_time=round(sum(c.execution_time for c in cases), 6),
            test_cases=cases[:MAX_CASES],
        )
        report.test_suites.append(suite)
        report.total_count += suite.total_count
        report.success_count += suite.success_count
        report.failed_count += suite.failed_count
        report.error_count += suite.error_count
        report.skipped_count += suite.skipped_count
        report.total_time += suite.total_time
    report.total_time = round(report.total_time, 6)
    return report
