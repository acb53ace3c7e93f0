"""`aicd run --isolate`: the jobs of a local run in the sandbox; the project's store stays theirs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aicd.executors.sandbox import probe
from aicd_testing import aicd, make_repo

PROBE = probe()
pytestmark = pytest.mark.skipif(not PROBE.ok, reason=PROBE.reason)

CI = """
check:
  script:
    - mkdir model && echo weights > model/w.txt
    - aicd model register iris model --json > registered.json
    - cat registered.json
    - 'if cat "$OUTSIDE/secret.txt" 2>/dev/null; then echo ESCAPED; exit 1; fi'
    - 'if touch "$OUTSIDE/pwned" 2>/dev/null && [ -e "$OUTSIDE/pwned" ]; then echo "wrote outside"; fi'
    - echo "home=$HOME"
"""


def test_isolate_runs_jobs_sandboxed_with_the_projects_store(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("the user's secret\n")
    project = make_repo(tmp_path / "project", {".gitlab-ci.yml": CI})
    proc = aicd(project, "run", "--isolate", "--json", "-v", f"OUTSIDE={outside}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "> the user's secret" not in proc.stderr and "> ESCAPED" not in proc.stderr
    assert "home=/tmp/home" in proc.stderr
    assert not (outside / "pwned").exists()
    # the AI verbs inside the job use the project's own store: the version is there after the run
    listed = aicd(project, "model", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "iris" in json.dumps(json.loads(listed.stdout))


def test_plain_runs_stay_unsandboxed(tmp_path: Path) -> None:
    project = make_repo(tmp_path / "project", {".gitlab-ci.yml": "job:\n  script:\n    - echo home=$HOME\n"})
    proc = aicd(project, "run")
    assert proc.returncode == 0, proc.stderr
    assert f"home={Path.home()}" in proc.stdout + proc.stderr
