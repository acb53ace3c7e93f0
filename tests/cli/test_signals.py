"""Killing `aicd run` mid-pipeline: no job process survives, the run is canceled."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from aicd_testing import AICD, aicd, clean_env, make_repo, processes_with

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_kill_mid_pipeline_leaves_nothing_and_records_canceled(tmp_path: Path, sig: signal.Signals) -> None:
    marker = f"aicdmark{uuid.uuid4().hex[:10]}"
    # Each job starts a background grandchild and a foreground sleep, both
    # carrying the marker in their command line.
    pipeline = (
        "stages: [one, two]\n"
        + "".join(
            f"job{i}:\n  stage: one\n  script:\n"
            f"    - bash -c 'exec -a {marker}-bg sleep 300' &\n"
            f"    - echo started{i}\n"
            f"    - bash -c 'exec -a {marker}-fg sleep 300'\n"
            for i in range(2)
        )
        + "later:\n  stage: two\n  script: [echo never]\n"
    )
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": pipeline})
    proc = subprocess.Popen(
        [*AICD, "run", "--json"],
        cwd=project,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so the test's own signal goes to aicd only
    )
    deadline = time.monotonic() + 60
    while len(processes_with(f"{marker}-fg")) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "jobs did not start"
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == (130 if sig == signal.SIGINT else 143), stderr
    assert "Traceback" not in stderr
    # no process of any job is left, not even the backgrounded grandchild
    deadline = time.monotonic() + 5
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == []
    result = json.loads(stdout)
    assert result["pipeline"]["status"] == "canceled"
    statuses = {j["name"]: j["status"] for j in result["jobs"]}
    assert statuses == {"job0": "canceled", "job1": "canceled", "later": "canceled"}
    runs = aicd(project, "runs", "--json")
    assert json.loads(runs.stdout)[0]["status"] == "canceled"
