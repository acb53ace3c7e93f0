"""A 5,000-job pipeline lints and runs end to end (issue 17): real repository, real `aicd`.

The bounds are hang guards for a loaded machine (load 8 on 2 cores), not speed claims: the
figures live in benchmarks/scale.py. A quadratic pass over the jobs inside a loop over the jobs
made 5,000 jobs take many minutes (the engine's own work alone is checked by counting in
tests/engine/test_scale.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aicd_testing import aicd, make_repo

N = 5000


def independent_pipeline(n: int) -> str:
    lines = ["stages: [test]"]
    for i in range(n):
        lines += [f"job{i:04d}:", "  stage: test", f"  script: [echo job {i}]"]
    return "\n".join(lines) + "\n"


def dag_pipeline(n: int) -> str:
    """Five stages; every job after the first stage needs two jobs of the stage before."""
    per = n // 5
    lines = ["stages: [s0, s1, s2, s3, s4]"]
    for i in range(n):
        s = i // per
        lines += [f"job{i:04d}:", f"  stage: s{s}", "  script: [echo ok]"]
        if s:
            needs = dict.fromkeys(f"job{(s - 1) * per + (i * 7 + k) % per:04d}" for k in range(2))
            lines.append("  needs: [" + ", ".join(needs) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_five_thousand_jobs_lint_and_run(tmp_path: Path) -> None:
    dag = make_repo(tmp_path / "dag", {".gitlab-ci.yml": dag_pipeline(N)})
    proc = aicd(dag, "lint", "--json", timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["valid"] and len(report["jobs"]) == N
    assert sum(1 for j in report["jobs"] if j["needs"]) == N - N // 5

    wide = make_repo(tmp_path / "wide", {".gitlab-ci.yml": independent_pipeline(N)})
    proc = aicd(wide, "run", "--json", timeout=1100)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["pipeline"]["status"] == "success"
    assert len(result["jobs"]) == N
    assert all(j["status"] == "success" and j["exit_code"] == 0 for j in result["jobs"])
    assert "job 4999" in Path(result["jobs"][-1]["log_path"]).read_text()
