"""Shadow traffic end to end: the real `aicd deploy --strategy shadow`, agent, router and iris service.

Users send iris rows to the environment's address while the candidate runs in shadow: it gets a
copy of every request after stable answered, and its predictions are compared with stable's. A
candidate that answers differently on 20% of the inputs (``IRIS_WRONG_SHARE``) is caught by the
agreement check and never promoted; an identical one is. Every answer a user got is checked
against stable's prediction for that row: users saw only stable's answers, and none failed.
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from rollout_testing import cli, cli_json, make_release, trained_model
from test_live_accuracy import iris_rows, wrong_share_of

from aicd_testing import AICD, clean_env

pytest.importorskip("sklearn", reason="the iris example needs scikit-learn: pip install -e '.[examples]'")
pytest.importorskip("flask", reason="the iris example needs flask: pip install -e '.[examples]'")

WRONG = 0.25  # IRIS_WRONG_SHARE that changes the answer on 20% of the iris rows
ENVS = {
    "prod": {
        "strategy": "shadow",
        "steps": [{"shadow": "6s"}],
        "analysis_interval": "1s",
        "rollback_window": "1s",
        "predictions": {"path": "/predict", "field": "predictions"},
        "shadow": {"percent": 100, "methods": ["POST"], "agreement": 0.95, "min_compared": 50},
    }
}


class _Hook(BaseHTTPRequestHandler):
    got: list[dict[str, object]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        type(self).got.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0))))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_model(tmp_path_factory.mktemp("iris"))


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    yield home
    cli(home, tmp_path, "env", "stop", "prod")


class Users(threading.Thread):
    """Rows to the address one at a time; every answer kept with the row it answered."""

    def __init__(self, url: str, rows: list[list[float]]) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.rows = rows
        self.halt = threading.Event()
        self.answers: list[tuple[int, int, list[int] | None]] = []  # (row index, status, predictions)

    def run(self) -> None:
        rng = random.Random(1)
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.halt.is_set():
                i = rng.randrange(len(self.rows))
                r = client.post("/predict", json={"features": [self.rows[i]]})
                self.answers.append((i, r.status_code, r.json().get("predictions") if r.is_success else None))


@pytest.mark.parametrize("candidate", ["different", "same"])
def test_shadow_catches_a_candidate_that_answers_differently_and_users_see_only_stable(
    tmp_path: Path, home: Path, model: Path, candidate: str
) -> None:
    rows = [row for row, _ in iris_rows()]
    _Hook.got = []
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=receiver.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    hook = cli(home, tmp_path, "hooks", "add", f"http://127.0.0.1:{receiver.server_address[1]}/", "--event",
               "deployment.finished")  # fmt: skip
    assert hook.returncode == 0, hook.stderr
    done = cli(home, make_release(tmp_path, "v1", model, environments=ENVS), "deploy", ".", "--env", "prod")
    assert done.returncode == 0, done.stdout + done.stderr
    url = str(cli_json(home, tmp_path, "env", "status", "prod")["url"])
    with httpx.Client(base_url=url) as client:  # stable's answer to every row, before the shadow
        stable = [client.post("/predict", json={"features": [row]}).json()["predictions"] for row in rows]
    knobs = {"IRIS_WRONG_SHARE": str(WRONG)} if candidate == "different" else {}
    if candidate == "different":
        assert wrong_share_of(iris_rows(), WRONG) == pytest.approx(0.2, abs=0.01)
    v2 = make_release(tmp_path, "v2", model, environments=ENVS, service_env=knobs)
    env = {**clean_env(), "AICD_HOME": str(home)}
    users = Users(url, rows)
    users.start()
    try:
        deploying = subprocess.run(
            [*AICD, "deploy", ".", "--env", "prod"],
            cwd=v2,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        users.halt.set()
        users.join(timeout=60)
    out = deploying.stdout + deploying.stderr
    last = cli_json(home, tmp_path, "env", "history", "prod")[0]
    events = cli_json(home, tmp_path, "env", "history", "prod", "--events")
    shadow = [e for e in (events if isinstance(events, list) else []) if e.get("kind") == "shadow.result"]
    print(
        f"\n{candidate}: {len(users.answers)} user requests; {last['status']}: {last['reason']}\n{out[-600:]}"
    )
    failed = [a for a in users.answers if a[1] != 200]
    assert failed == []
    assert len(users.answers) > 100
    if candidate == "different":
        assert deploying.returncode == 1, out
        assert last["status"] == "failed" and "agree on" in last["reason"], last
        assert cli_json(home, tmp_path, "env", "status", "prod")["environment"]["stable_revision"] == "r1"
        # request by request: every user got stable's answer, though the candidate differs on 20%
        assert all(predictions == stable[i] for i, _, predictions in users.answers)
    else:
        assert deploying.returncode == 0, out
        assert last["status"] == "succeeded", last
        assert "shadow:" in out and "agree on 100.0%" in out, out
    assert shadow or "shadow:" in out
    # the deployments' ends went out as signed events (the receiver here only reads them)
    deadline = time.monotonic() + 60
    while len(_Hook.got) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    receiver.shutdown()
    receiver.server_close()
    finished = sorted((d["data"]["deployment"], d["data"]["status"]) for d in _Hook.got)  # type: ignore[index]
    assert finished == [(1, "succeeded"), (2, "failed" if candidate == "different" else "succeeded")]
