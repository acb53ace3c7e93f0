"""Front end at thousands of jobs: linear work, even with thousands of errors (issue 17)."""

from __future__ import annotations

from pathlib import Path

import pytest

import aicd.suggest
from aicd.pipeline import PipelineContext, lint_pipeline
from aicd.suggest import HintBudget

N = 3000


def test_thousands_of_misspelt_needs_are_all_reported_with_bounded_hint_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[int] = []
    real = aicd.suggest.did_you_mean

    def counting(name: str, candidates):  # type: ignore[no-untyped-def]
        candidates = list(candidates)
        compared.append(len(candidates))
        return real(name, candidates)

    monkeypatch.setattr(aicd.suggest, "did_you_mean", counting)
    lines = ["stages: [a, b]"]
    for i in range(N):
        lines += [f"job{i:04d}:", "  stage: a", "  script: [x]"]
    for i in range(N):
        lines += [f"tst{i:04d}:", "  stage: b", "  script: [x]", f"  needs: [jbo{i:04d}]"]
    (tmp_path / ".gitlab-ci.yml").write_text("\n".join(lines) + "\n")

    report = lint_pipeline(tmp_path, ".gitlab-ci.yml", PipelineContext())

    errors = [d.message for d in report.diagnostics if d.severity == "error"]
    assert len(errors) == N  # every problem, at once
    assert 'needs "jbo0000", which is not a job (did you mean "job0000"?)' in errors[0]
    assert "did you mean" not in errors[-1]  # the hint budget was spent long before
    # each hint compares with every job name: without a budget, N x 2N comparisons
    assert sum(compared) <= HintBudget().left


def test_hint_budget_keeps_short_lists_and_stops_long_ones() -> None:
    budget = HintBudget(work=10)
    assert budget("scirpt", ["script", "stage"]) == ' (did you mean "script"?)'
    assert budget("jbo", [f"job{i}" for i in range(9)]) == ""  # 9 > 8 left: no hint
    assert budget("scirpt", ("script",)) == ' (did you mean "script"?)'
