"""Live accuracy from delayed labels, end to end: the real `aicd deploy`, agent, router and iris service.

A client sends iris rows one at a time to the environment's address and remembers each answer's
X-Request-Id with the row's true class; it posts the labels to ``/_aicd/feedback``, half of them at
once and half several seconds later (labels arrive late in real life). The canary's ``labels``
step waits until enough labels arrived for both revisions; the analysis then compares their live
accuracy (two-proportion test). A candidate about 10 points less accurate
(``IRIS_WRONG_SHARE``) is rolled back for it; an equally accurate one is promoted.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rollout_testing import cli, cli_json, make_release, trained_model

from aicd_testing import AICD, clean_env

pytest.importorskip("sklearn", reason="the iris example needs scikit-learn: pip install -e '.[examples]'")
pytest.importorskip("flask", reason="the iris example needs flask: pip install -e '.[examples]'")

LATE = 6.0  # seconds after its answer that every other label is posted
LABELS = 400  # labels per revision the canary step waits for
ENVS = {
    "prod": {
        "strategy": "canary",
        "steps": [{"set_weight": 50}, {"labels": {"count": LABELS, "timeout": "150s"}}],
        "analysis_interval": "1s",
        "rollback_window": "1s",
        "predictions": {"path": "/predict", "field": "predictions"},
        "feedback": {"labels": "classes", "window": "10m", "margin": 0.02, "alpha": 0.05},
    }
}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_model(tmp_path_factory.mktemp("iris"))


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    yield home
    cli(home, tmp_path, "env", "stop", "prod")


def iris_rows() -> list[tuple[list[float], int]]:
    from sklearn.datasets import load_iris  # type: ignore[import-untyped]

    data = load_iris()
    return [([float(v) for v in row], int(y)) for row, y in zip(data.data, data.target, strict=True)]


def wrong_share_of(rows: list[tuple[list[float], int]], share: float) -> float:
    """The share of these rows the service's IRIS_WRONG_SHARE picks (its hash, as app.py has it)."""

    def picked(row: list[float]) -> bool:
        digest = hashlib.sha256(repr([round(v, 6) for v in row]).encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < share

    return sum(picked(row) for row, _ in rows) / len(rows)


class Labeller:
    """Iris rows to the address one at a time; labels posted at once or ``LATE`` s after."""

    def __init__(self, url: str, rows: list[tuple[list[float], int]]) -> None:
        self.url = url
        self.rows = rows
        self.stop = threading.Event()
        self.sent = 0
        self.late_posted = 0
        self.outcomes: dict[str, int] = {}
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def post(self, client: httpx.Client, labels: list[dict[str, Any]]) -> None:
        if not labels:
            return
        answer = client.post("/_aicd/feedback", json={"labels": labels})
        if answer.status_code != 200:
            self.failures.append(f"feedback {answer.status_code} {answer.text}")
            return
        for key, n in answer.json().items():
            self.outcomes[key] = self.outcomes.get(key, 0) + n

    def run(self) -> None:
        late: list[tuple[float, dict[str, Any]]] = []
        now_batch: list[dict[str, Any]] = []
        rng = random.Random(16)  # rows in a new order each round, late labels at random: neither
        order: list[tuple[list[float], int]] = []  # follows the router's alternation of revisions
        with httpx.Client(base_url=self.url, timeout=30) as client:
            i = 0
            while not self.stop.is_set():
                if not order:
                    order = rng.sample(self.rows, len(self.rows))
                row, truth = order.pop()
                answer = client.post("/predict", json={"features": [row]})
                if answer.status_code != 200:
                    self.failures.append(f"predict {answer.status_code}")
                    continue
                label = {"request_id": answer.headers["x-request-id"], "label": truth}
                if rng.random() < 0.5:
                    late.append((time.monotonic() + LATE, label))
                else:
                    now_batch.append(label)
                i += 1
                self.sent = i
                if len(now_batch) >= 20:
                    self.post(client, now_batch)
                    now_batch = []
                due = [item for at, item in late if at <= time.monotonic()]
                if due:
                    late = [(at, item) for at, item in late if at > time.monotonic()]
                    self.post(client, due)
                    self.late_posted += len(due)
                time.sleep(0.003)

    def __enter__(self) -> Labeller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


@pytest.mark.parametrize("candidate", ["worse", "equal"])
def test_live_accuracy_from_late_labels_catches_a_worse_model(
    tmp_path: Path, home: Path, model: Path, candidate: str
) -> None:
    rows = iris_rows()
    release = make_release(tmp_path, "v1", model, environments=ENVS)
    done = cli(home, release, "deploy", ".", "--env", "prod")
    assert done.returncode == 0, done.stdout + done.stderr
    url = str(cli_json(home, tmp_path, "env", "status", "prod")["url"])
    knobs = {"IRIS_WRONG_SHARE": "0.15"} if candidate == "worse" else {}
    if candidate == "worse":
        picked = wrong_share_of(rows, 0.15)
        assert 0.09 <= picked <= 0.11, picked  # 10% of the iris rows: about 10 points of accuracy lost
    v2 = make_release(tmp_path, "v2", model, environments=ENVS, service_env=knobs)
    env = {**clean_env(), "AICD_HOME": str(home)}
    with Labeller(url, rows) as labeller:
        deploying = subprocess.run(
            [*AICD, "deploy", ".", "--env", "prod"],
            cwd=v2,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    out = deploying.stdout + deploying.stderr
    last = cli_json(home, tmp_path, "env", "history", "prod")[0]
    quality = (last["analysis"] or {}).get("quality") or {}
    print(f"\n{candidate}: {labeller.sent} requests, labels {labeller.outcomes} ({labeller.late_posted} "
          f"posted {LATE:g}s late); {last['status']}: {last['reason']}; quality {quality}")  # fmt: skip
    assert labeller.failures == []
    assert labeller.late_posted > 0 and labeller.outcomes.get("joined", 0) >= 2 * LABELS
    assert quality["stable"]["labels"] >= LABELS and quality["canary"]["labels"] >= LABELS
    live = cli_json(home, tmp_path, "metrics", "--env", "prod")["environments"][0]["live_quality"]
    assert live["revisions"]["r1"]["labels"] >= LABELS and live["feedback"]["joined"] >= 2 * LABELS
    if candidate == "worse":
        assert deploying.returncode == 1, out
        assert last["status"] == "rolled_back"
        assert "live accuracy lower" in last["reason"], last["reason"]
        assert quality["verdict"] == "fail"
        assert cli_json(home, tmp_path, "env", "status", "prod")["environment"]["stable_revision"] == "r1"
    else:
        assert deploying.returncode == 0, out
        assert last["status"] == "succeeded", last["reason"]
        assert quality["verdict"] == "pass"
        assert cli_json(home, tmp_path, "env", "status", "prod")["environment"]["stable_revision"] == "r2"
