"""The demo's story with a real `aicd run`: a pipeline the user canceled is the user's interrupt."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from aicd.demo.cleanup import processes_under
from aicd.demo.story import DemoState, Progress, _pipeline, demo_env
from aicd_testing import git, make_repo

PIPELINE = "job:\n  script:\n    - echo started\n    - sleep 120\n"


def _interrupt_the_run_only(log: Path, repo: Path, sent: list[int]) -> None:
    """SIGINT to `aicd run` alone, once its job runs: the race in which the run ends canceled
    before the demo's own KeyboardInterrupt is raised."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if log.is_file() and "started" in log.read_text(errors="replace"):
            runs = [pid for pid, cmd in processes_under(repo).items() if "aicd.cli.main run" in cmd]
            if runs:
                os.kill(runs[0], signal.SIGINT)
                sent.append(runs[0])
                return
        time.sleep(0.1)


def test_a_pipeline_canceled_by_ctrl_c_is_an_interrupt_not_an_unexpected_result(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": PIPELINE})
    root = tmp_path / "demo"
    root.mkdir()
    state = DemoState(root, root / "home", repo, root / "logs", demo_env(root, root / "home"))
    sent: list[int] = []
    watcher = threading.Thread(
        target=_interrupt_the_run_only, args=(state.logs / "pipeline-1.log", repo, sent), daemon=True
    )
    watcher.start()
    with pytest.raises(KeyboardInterrupt):
        _pipeline(state, Progress(io.StringIO()), git(repo, "rev-parse", "HEAD"), "t", "success", "a release")
    watcher.join(timeout=10)
    assert sent, "the job never started"
    [run] = state.runs
    assert (run.status, run.exit_code, run.jobs) == ("canceled", 130, {"job": "canceled"})
