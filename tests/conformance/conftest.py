"""Conformance suite plumbing: the `conformance` marker and the closing count line."""

from __future__ import annotations

from collections import Counter

import pytest

_CATEGORY = "conformance_category"
_results: dict[str, tuple[str, str]] = {}  # nodeid -> (category, outcome)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "conformance: runs the gitlab-ci-local corpus through `aicd run` (tests/conformance)"
    )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    category = dict(report.user_properties).get(_CATEGORY)
    if category is None:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _results[report.nodeid] = (str(category), report.outcome)
    elif report.when == "teardown" and report.outcome == "failed":
        _results[report.nodeid] = (str(category), "failed")


def summary_line(results: dict[str, tuple[str, str]]) -> str:
    counts: Counter[str] = Counter()
    for category, outcome in results.values():
        if outcome == "failed":
            counts["failing"] += 1
        else:
            counts[category] += 1
    line = (
        f"conformance: {counts['agree']} agree, {counts['divergent']} divergent (documented), "
        f"{counts['out of scope']} out of scope"
    )
    if counts["failing"]:
        line += f", {counts['failing']} failing"
    return line


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _results:
        terminalreporter.write_line(summary_line(_results))
