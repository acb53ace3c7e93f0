"""The example AI service (examples/iris-service, Flask) under the supervisor, spec from its aicd.yml."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_supervisor_support import Events, get, run, supervising, wait_gone

from aicd.deploy.spec import load_service_spec
from aicd.deploy.supervisor.supervisor import InstanceState

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "iris-service"


def test_iris_service_starts_serves_and_stops(tmp_path: Path) -> None:
    missing = [m for m in ("sklearn", "flask", "joblib") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not importable: pip install -e '.[examples]'", pytrace=False)
    release = tmp_path / "release"
    shutil.copytree(EXAMPLE, release, ignore=shutil.ignore_patterns("__pycache__", "model", "tests", ".aicd"))
    subprocess.run(
        [sys.executable, "train.py", "--out", "model"],
        cwd=release,
        check=True,
        capture_output=True,
        timeout=600,
    )
    with open(release / "aicd.yml", "a") as fh:
        fh.write(
            f"service:\n  command: [{sys.executable}, app.py]\n  instances: 2\n  readiness_timeout: 30s\n"
        )
    spec = load_service_spec(release / "aicd.yml", "aicd.yml")
    events = Events()

    async def main() -> None:
        async with supervising(tmp_path / "state", on_event=events) as sup:
            started = time.monotonic()
            infos = await sup.start("v1", release, spec)
            print(f"iris: 2 instances healthy in {time.monotonic() - started:.2f}s")
            for info in infos:
                status, body = get(info.port, "/healthz")
                assert status == 200 and json.loads(body)["status"] == "ok"
                request = urllib.request.Request(
                    f"http://127.0.0.1:{info.port}/predict",
                    data=json.dumps({"features": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=5) as resp:
                    answer = json.loads(resp.read())
                assert answer["labels"] == ["setosa", "virginica"]
            await sup.stop("v1")
            assert all(i.pid is not None and wait_gone(i.pid, 2) for i in infos)
            await sup.shutdown()

    run(main())
    assert events.states(0) == [InstanceState.STARTING, InstanceState.READY, InstanceState.STOPPED]
    assert "Running on http://127.0.0.1:" in (tmp_path / "state" / "logs" / "v1.0.log").read_text()
