"""The monitor end to end: the real iris service deployed by `aicd deploy`, `aicd monitor` as a real
process, and a `kill -9` of the service's process.

The monitor must open a `down` incident within two probe intervals of the kill, the supervisor
must start the service again (a new pid), the incident must close on the first good probe, and
`aicd metrics` must count one failure whose MTTR is the incident's duration.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aicd_testing import AICD, clean_env
from deploy.rollout_testing import cli, cli_json, make_release, trained_model

pytest.importorskip("sklearn", reason="the iris example needs scikit-learn: pip install -e '.[examples]'")
pytest.importorskip("flask", reason="the iris example needs flask: pip install -e '.[examples]'")

INTERVAL = 0.3


class Lines:
    """The stdout of a process, line by line, with the time each arrived."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.seen: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.seen.append((time.time(), line.rstrip("\n")))

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, line in list(self.seen):
                if predicate(line):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no such line within {timeout}s; got: {[line for _, line in self.seen]}")


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    yield home
    cli(home, tmp_path, "env", "stop", "prod")


def stable_instance(home: Path, cwd: Path) -> dict[str, Any]:
    status = cli_json(home, cwd, "env", "status", "prod")
    (stable,) = [r for r in status["revisions"] if r["role"] == "stable"]
    (instance,) = stable["instances"]
    return dict(instance)


def test_killed_service_opens_an_incident_that_closes_when_the_supervisor_restarts_it(
    tmp_path: Path, home: Path
) -> None:
    model = trained_model(tmp_path / "iris")
    release = make_release(tmp_path, "v1", model, environments={"prod": {"strategy": "recreate"}})
    deployed = cli(home, release, "deploy", ".", "--env", "prod")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    monitor = subprocess.Popen(
        [*AICD, "monitor", "--env", "prod", "--interval", f"{INTERVAL}s", "--json"],
        cwd=tmp_path,
        env={**clean_env(), "AICD_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = Lines(monitor)
        lines.wait_for(lambda line: json.loads(line)["state"] == "up")
        before = stable_instance(home, tmp_path)
        assert before["state"] == "ready"

        killed_at = time.time()
        os.kill(before["pid"], signal.SIGKILL)
        opened_line = json.loads(lines.wait_for(lambda line: json.loads(line)["action"] == "opened"))
        resolved_line = json.loads(lines.wait_for(lambda line: json.loads(line)["action"] == "resolved"))
        assert opened_line["state"] == "down" and resolved_line["state"] == "up"

        deadline = time.monotonic() + 30
        after = stable_instance(home, tmp_path)
        while after["pid"] == before["pid"] or after["state"] != "ready":
            assert time.monotonic() < deadline, f"the service did not come back: {after}"
            time.sleep(0.1)
            after = stable_instance(home, tmp_path)
    finally:
        monitor.send_signal(signal.SIGINT)
        try:
            code = monitor.wait(timeout=15)
        except subprocess.TimeoutExpired:
            monitor.kill()
            raise
    assert code == 0, monitor.stderr.read() if monitor.stderr else ""
    assert after["restarts"] == before["restarts"] + 1

    (incident,) = cli_json(home, tmp_path, "incident", "list", "--env", "prod")
    assert incident["kind"] == "down" and incident["opened_by"] == "monitor"
    assert incident["resolution"] == "recovered"
    detected = incident["opened_at"] - killed_at
    assert -0.1 <= detected <= 2 * INTERVAL, f"opened {detected:.3f}s after the kill"
    down_for = incident["resolved_at"] - incident["opened_at"]
    assert down_for > 0

    figures = cli_json(home, tmp_path, "metrics", "--env", "prod")["environments"][0]["reliability"]
    assert figures["failures"] == 1
    assert figures["mttr_s"] == pytest.approx(down_for, abs=1e-3)
    assert figures["downtime_s"] == pytest.approx(down_for, abs=1e-3)
    events = [e["kind"] for e in cli_json(home, tmp_path, "env", "history", "prod", "--events")]
    assert events.index("incident.opened") < events.index("incident.resolved")
    print(
        f"\nkill -9 of pid {before['pid']} -> incident #{incident['id']} "
        f"opened {detected * 1000:.0f} ms later "
        f"(probe interval {INTERVAL * 1000:.0f} ms); service back as pid {after['pid']}; "
        f"incident resolved after {down_for:.3f}s; aicd metrics: failures {figures['failures']}, "
        f"MTTR {figures['mttr_s']:.3f}s, availability {figures['availability']:.6f}"
    )
