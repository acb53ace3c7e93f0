"""Reading `artifacts:reports` files and the `coverage` regex.

Every parser takes file contents and returns what it understood plus a list
of warnings (one per line or file it could not read); none of them raises on
bad input: a malformed report never fails a job.

dotenv, as GitLab documents it for ``artifacts:reports:dotenv``: one
``KEY=VALUE`` per line; blank lines and ``#`` comment lines are skipped; the
key may hold only ASCII letters, digits and ``_``; spaces around key and value
are stripped; no variable substitution, no multi-line values. One pair of
matching surrounding quotes (``'...'`` or ``"..."``) is removed, as
gitlab-ci-local does. Values are kept literal (``expand=False``). GitLab also
limits the file to 5 KiB: a bigger file is still read, with a warning.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from aicd.executors.base import TestSummary
from aicd.pipeline.ir import Variable

DOTENV_MAX_BYTES = 5 * 1024
_DOTENV_KEY = re.compile(r"[A-Za-z0-9_]+")


def parse_dotenv(text: str, source: str = "dotenv") -> tuple[list[Variable], list[str]]:
    out: list[Variable] = []
    warnings: list[str] = []
    if len(text.encode()) > DOTENV_MAX_BYTES:
        warnings.append(f"WARNING: {source}: larger than GitLab's 5 KiB dotenv limit")
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _DOTENV_KEY.fullmatch(key):
            warnings.append(
                f"WARNING: {source}:{lineno}: not a KEY=VALUE line (key: letters, digits, _); ignored"
            )
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out.append(Variable(key=key, value=value, expand=False))
    return out, warnings


@dataclass
class _Counts:
    """Test counts while JUnit reports are read."""

    total: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0


def _local(tag: object) -> str:
    name = tag if isinstance(tag, str) else ""
    return name.rsplit("}", 1)[-1]


def mask_junit_file(path: Path, mask: Callable[[str], str]) -> None:
    """Rewrite a kept JUnit file with masked variables' values hidden in every text and attribute
    (test names, messages, system-out): the test report shows what these files hold. A file that
    is not XML is left as is (no report shows it)."""
    import xml.etree.ElementTree as ET  # only for jobs with JUnit reports: not on every run's path

    try:
        tree = ET.parse(path)
    except (ET.ParseError, OSError):
        return
    changed = False
    for element in tree.getroot().iter():
        for attr, value in element.attrib.items():
            if (masked := mask(value)) != value:
                element.set(attr, masked)
                changed = True
        for part in ("text", "tail"):
            value = getattr(element, part)
            if value and (masked := mask(value)) != value:
                setattr(element, part, masked)
                changed = True
    if changed:
        with contextlib.suppress(OSError):
            tree.write(path, encoding="utf-8", xml_declaration=True)


def parse_junit(texts: Iterable[tuple[str, bytes]]) -> tuple[TestSummary | None, list[str]]:
    """Sum the test cases of several JUnit XML files (``(name, content)`` pairs).

    Each ``<testcase>`` counts once: failed if it has ``<failure>``, an error
    if ``<error>``, skipped if ``<skipped>``, else passed. Returns None when no
    file could be read.
    """
    import xml.etree.ElementTree as ET  # only for jobs with JUnit reports: not on every run's path

    counts = _Counts()
    warnings: list[str] = []
    any_read = False
    for name, data in texts:
        try:
            root = ET.fromstring(data)
        except ET.ParseError as exc:
            warnings.append(f"WARNING: {name}: not a valid JUnit XML file ({exc}); ignored")
            continue
        any_read = True
        for case in root.iter():
            if _local(case.tag) != "testcase":
                continue
            kinds = {_local(child.tag) for child in case}
            counts.total += 1
            if "failure" in kinds:
                counts.failed += 1
            elif "error" in kinds:
                counts.errors += 1
            elif "skipped" in kinds:
                counts.skipped += 1
            else:
                counts.passed += 1
    if not any_read:
        return None, warnings
    summary = TestSummary(
        total=counts.total,
        passed=counts.passed,
        failed=counts.failed,
        errors=counts.errors,
        skipped=counts.skipped,
    )
    return summary, warnings


_METRIC = re.compile(
    r"(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?P<labels>\{[^}]*\})?\s+(?P<value>\S+)(?:\s+-?\d+(?:\.\d+)?)?"
)


def parse_metrics(text: str, source: str = "metrics") -> tuple[dict[str, float], list[str]]:
    """OpenMetrics / Prometheus text: ``name{labels} value [timestamp]`` per line.

    The key is the metric name, or ``name{labels}`` as written when it has
    labels. ``#`` lines (HELP, TYPE, EOF) and blank lines are skipped.
    """
    out: dict[str, float] = {}
    warnings: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _METRIC.fullmatch(line)
        value: float | None = None
        if m:
            try:
                value = float(m.group("value"))
            except ValueError:
                value = None
        if m is None or value is None:
            warnings.append(f"WARNING: {source}:{lineno}: not a 'name value' metric line; ignored")
            continue
        key = m.group("name") + (m.group("labels") or "")
        out[key] = value
    return out, warnings


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


class CoverageScanner:
    """Finds the job's coverage the way GitLab does, line by line as output arrives.

    The regex is written ``/.../``. The last line that matches wins; in it, the
    last match; in that, the last group that captured something (or the whole
    match); the first number there is the coverage.
    """

    def __init__(self, pattern: str) -> None:
        self.value: float | None = None
        self.error: str | None = None
        body = pattern.strip()
        if len(body) >= 2 and body.startswith("/") and body.endswith("/"):
            body = body[1:-1]
        try:
            self._regex: re.Pattern[str] | None = re.compile(body)
        except re.error as exc:
            self._regex = None
            self.error = f"WARNING: coverage regex {pattern} is not valid: {exc}"

    def feed(self, line: str) -> None:
        if self._regex is None:
            return
        found = None
        for m in self._regex.finditer(line):
            found = m
        if found is None:
            return
        groups = [g for g in found.groups() if g]
        fragment = groups[-1] if groups else found.group(0)
        number = _NUMBER.search(fragment)
        if number is not None:
            value = float(number.group(0))
            if not math.isnan(value):
                self.value = value
