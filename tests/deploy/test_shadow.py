"""Shadow traffic end to end: the real `aicd deploy --strategy shadow`, agent, router and iris service.

Users send iris rows to the environment's address while the candidate runs in shadow: it gets a
copy of every request after stable answered, and its predictions are compared with stable's. A
candidate that answers differently on 20% of the inputs (``IRIS_WRONG_SHARE``) is caught by the
agreement check and never promoted; an identical one is. Every answer a user got is checked
against stable's prediction for that row: users saw only stable's answers, and none failed.
Latency in the same run: the users' p99 while mirroring (between the ``shadow.started`` and
``shadow.result`` events) against their p99 before the deployment began (no candidate, no copies).
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from rollout_testing import TOLERANT_ANALYSIS, cli, cli_json, make_release, trained_model
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
# The guardrails after the shadow phase: TOLERANT_ANALYSIS (latency only fails at 3x). A mirrored
# copy is served while stable serves the user's next request, and the candidate is a new process:
# on a busy 2-core machine it is a little slower, which is not what this test is about.


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
        self.timing: list[tuple[float, float, int]] = []  # (sent at, latency ms, status)

    def run(self) -> None:
        rng = random.Random(1)
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.halt.is_set():
                i = rng.randrange(len(self.rows))
                sent, started = time.time(), time.perf_counter()
                r = client.post("/predict", json={"features": [self.rows[i]]})
                self.timing.append((sent, (time.perf_counter() - started) * 1000, r.status_code))
                self.answers.append((i, r.status_code, r.json().get("predictions") if r.is_success else None))

    def window(self, start: float, end: float) -> tuple[list[float], int]:
        """(latencies in ms, failed requests) of the requests sent from ``start`` to ``end``."""
        inside = [(ms, status) for at, ms, status in list(self.timing) if start <= at < end]
        return [ms for ms, _ in inside], sum(1 for _, status in inside if status != 200)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


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
    v1 = make_release(tmp_path, "v1", model, environments=ENVS, analysis=TOLERANT_ANALYSIS)
    done = cli(home, v1, "deploy", ".", "--env", "prod")
    assert done.returncode == 0, done.stdout + done.stderr
    url = str(cli_json(home, tmp_path, "env", "status", "prod")["url"])
    with httpx.Client(base_url=url) as client:  # stable's answer to every row, before the shadow
        stable = [client.post("/predict", json={"features": [row]}).json()["predictions"] for row in rows]
    knobs = {"IRIS_WRONG_SHARE": str(WRONG)} if candidate == "different" else {}
    if candidate == "different":
        assert wrong_share_of(iris_rows(), WRONG) == pytest.approx(0.2, abs=0.01)
    v2 = make_release(tmp_path, "v2", model, environments=ENVS, service_env=knobs, analysis=TOLERANT_ANALYSIS)
    env = {**clean_env(), "AICD_HOME": str(home)}
    users = Users(url, rows)
    users.start()
    deadline = time.monotonic() + 60
    while len(users.timing) < 350 and time.monotonic() < deadline:  # the load without mirroring
        time.sleep(0.05)
    warm, before = users.timing[50][0], time.time()  # the first 50 requests warm the connection up
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
        assert last["status"] == "rejected" and "agree on" in last["reason"], last
        assert cli_json(home, tmp_path, "env", "status", "prod")["environment"]["stable_revision"] == "r1"
        # request by request: every user got stable's answer, though the candidate differs on 20%
        assert all(predictions == stable[i] for i, _, predictions in users.answers)
    else:
        assert deploying.returncode == 0, out
        assert last["status"] == "succeeded", last
        assert "shadow:" in out and "agree on 100.0%" in out, out
    assert shadow or "shadow:" in out
    # p99 with and without mirroring, same run, same users
    started = [e["at"] for e in events if e.get("kind") == "shadow.started"]
    ended = [e["at"] for e in events if e.get("kind") == "shadow.result"]
    assert started and ended, [e.get("kind") for e in events]
    plain, plain_failed = users.window(warm, before)
    mirrored, mirrored_failed = users.window(started[0], ended[0])
    print(
        f"{candidate}: without mirroring {len(plain)} requests, p99 {p99(plain):.1f} ms; with mirroring "
        f"{len(mirrored)} requests, p99 {p99(mirrored):.1f} ms; failed {plain_failed} / {mirrored_failed}"
    )
    assert len(plain) >= 100 and len(mirrored) >= 100
    assert plain_failed == 0 and mirrored_failed == 0
    assert p99(mirrored) <= p99(plain) * 3 + 50, (p99(mirrored), p99(plain))
    # the deployments' ends went out as signed events (the receiver here only reads them)
    deadline = time.monotonic() + 60
    while len(_Hook.got) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    receiver.shutdown()
    receiver.server_close()
    finished = sorted((d["data"]["deployment"], d["data"]["status"]) for d in _Hook.got)  # type: ignore[index]
    assert finished == [(1, "succeeded"), (2, "rejected" if candidate == "different" else "succeeded")]
