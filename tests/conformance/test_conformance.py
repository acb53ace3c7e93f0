"""Run every case of the gitlab-ci-local corpus through `aicd run` and compare.

One test per case (ids are the case names). A case either agrees with the
reference runner's recorded run (jobs that ran, each job's PASS/WARN/FAIL,
each job's `>` output lines after normalisation, the exit code, or the
refusal of a bad pipeline), or it is listed in known_divergences.CASES with
its category and reason, and is then checked against the run GitLab
documents where there is one. See docs/conformance.md.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from gclocal_corpus import (
    CORPUS,
    CompareOptions,
    RunRecord,
    aicd_record,
    canonical_name,
    case_names,
    compare,
    listed_jobs,
    make_case_repo,
    parse_run_text,
    reference_record,
    run_aicd,
)
from known_divergences import CASES, OPTIONS, Category, note_for, options_for

pytestmark = pytest.mark.conformance

_NAMES = case_names()
_NO_CORPUS = pytest.param("<no corpus>", marks=pytest.mark.skip(reason=f"no corpus at {CORPUS}"))
_PARAMS: list[object] = list(_NAMES) or [_NO_CORPUS]


def _report(case: str, what: str, diffs: list[str], log: str) -> str:
    body = "\n".join(f"- {d}" for d in diffs)
    return f"case {case}: {what}\n{body}\n--- aicd run\n{log}"


@pytest.mark.parametrize("case", _PARAMS)
def test_case(case: str, tmp_path: Path, record_property: Callable[[str, object], None]) -> None:
    note = note_for(case)
    record_property("conformance_category", note.category.value)
    if note.category is Category.OUT_OF_SCOPE and note.gitlab is None:
        pytest.skip(f"{note.kind}: {note.reason}")

    project = make_case_repo(case, tmp_path / "project")
    run = run_aicd(project)
    got: RunRecord = aicd_record(run)
    options = options_for(case)

    if note.category is Category.AGREE:
        diffs = compare(reference_record(case), got, options)
        assert not diffs, _report(case, "aicd disagrees with the reference runner", diffs, run.describe())
        return

    if note.category is Category.DIVERGENT and not compare(reference_record(case), got, options):
        pytest.fail(
            f"case {case} now agrees with the reference runner: remove it from the divergence list "
            f"(tests/conformance/known_divergences.py) or check the reason: {note.reason}"
        )
    if note.gitlab is not None:
        names = {row["name"] for row in listed_jobs(case)}
        expected = parse_run_text(note.gitlab, names)
        diffs = compare(expected, got, options)
        assert not diffs, _report(
            case, f"aicd disagrees with GitLab's documented run ({note.kind})", diffs, run.describe()
        )


def test_table_names_real_cases() -> None:
    """The divergence table and the options name cases that exist, each with a reason."""
    if not _NAMES:
        pytest.skip(f"no corpus at {CORPUS}")
    unknown = sorted((set(CASES) | set(OPTIONS)) - set(_NAMES))
    assert not unknown, f"table entries for cases not in the corpus: {unknown}"
    for case, note in CASES.items():
        assert note.category is not Category.AGREE, case
        assert note.kind and note.reason, f"{case}: a listed case needs its kind and reason"
        if note.gitlab is not None:
            parsed = parse_run_text(note.gitlab, {row["name"] for row in listed_jobs(case)})
            assert "exit=" in note.gitlab, f"{case}: the GitLab run needs its exit=N line"
            lines = sum(len(v) for v in parsed.outputs.values())
            expected_lines = note.gitlab.count(" >")
            assert lines == expected_lines, f"{case}: a `>` line of the GitLab run names no job"
    for case, entry in OPTIONS.items():
        assert entry.reason, f"{case}: a comparison option needs its reason"


def test_reference_parser_reads_the_corpus() -> None:
    """Every agreeing case's recorded run parses: it ran, or it was refused with a message."""
    if not _NAMES:
        pytest.skip(f"no corpus at {CORPUS}")
    for case in _NAMES:
        record = reference_record(case)
        if record.refused:
            assert record.exit_code != 0 and record.message, case
        else:
            listed = {row["name"] for row in listed_jobs(case)}
            assert set(record.outcomes) <= listed | set(record.outputs), case


def test_compare_finds_each_kind_of_difference() -> None:
    """The comparison itself: names, outcomes, output order, exit code, refusals, normalising."""
    ref = parse_run_text(
        "a > \x1b[32mone\x1b[0m\na > two  \nb: [x,y] > /tmp/tmp.AbC123/.gitlab-ci-local/builds/b/f\n\n"
        " PASS  a\n FAIL  b: [x,y]\n WARN  a  after_script\npipeline finished in 1 s\nexit=1\n",
        {"a", "b: [x,y]"},
    )
    assert ref.outcomes == {"a": "PASS", "b: [x,y]": "FAIL"}
    assert ref.outputs == {"a": ["one", "two"], "b: [x,y]": ["<project>/f"]}
    same = RunRecord(False, 1, {"a": "PASS", "b: [x,y]": "FAIL"}, dict(ref.outputs))
    assert compare(ref, same) == []
    swapped = RunRecord(False, 1, dict(same.outcomes), {"a": ["two", "one"], "b: [x,y]": ["<project>/f"]})
    assert any("output differs" in d for d in compare(ref, swapped))
    assert compare(ref, swapped, CompareOptions(unordered=frozenset({"a"}))) == []
    worse = RunRecord(False, 0, {"a": "WARN"}, {})
    diffs = compare(ref, worse)
    assert any("expected PASS, got WARN" in d for d in diffs)
    assert any("should run but did not" in d for d in diffs)
    assert any("exit code" in d for d in diffs)
    refused = RunRecord(True, 1, message="x")
    assert compare(refused, RunRecord(True, 2, message=".gitlab-ci.yml:1:1: bad")) == []
    assert compare(refused, same)  # ran although it should be refused
    assert compare(ref, RunRecord(True, 2, message="Traceback (most recent call last):"))
    assert canonical_name("job: [1/2]") == canonical_name("job 1/2") == "job 1/2"
    assert canonical_name("job: [a, b]") == canonical_name("job: [a,b]")
