"""A/B experiments end to end: the real `aicd deploy --strategy experiment`, agent, router and iris
service under generated load, users keyed by a header, labels posted to ``/_aicd/feedback``.

One variant answers wrongly on 20% of the iris rows (``IRIS_WRONG_SHARE``). Each user keeps one
variant for the whole experiment (checked request by request). The verdict comes once every
variant has the sample the design computed (printed): a better b wins and is promoted
automatically; a worse b loses, a keeps serving and b stops (recorded failed, with the result);
an equal b is no better, the deployment pauses with that verdict, and
`aicd promote prod --variant b` promotes it by hand.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rollout_testing import TOLERANT_ANALYSIS, cli, cli_json, make_release, trained_model
from test_live_accuracy import iris_rows, wrong_share_of

from aicd.delivery.experiment_stats import Design
from aicd_testing import AICD, clean_env

pytest.importorskip("sklearn", reason="the iris example needs scikit-learn: pip install -e '.[examples]'")
pytest.importorskip("flask", reason="the iris example needs flask: pip install -e '.[examples]'")

WRONG = 0.25  # IRIS_WRONG_SHARE that changes the answer on 20% of the iris rows
USERS = 40


def environments(auto_promote: bool) -> dict[str, Any]:
    return {
        "prod": {
            "strategy": "experiment",
            "auto_promote": auto_promote,
            "analysis_interval": "1s",
            "rollback_window": "1s",
            "predictions": {"path": "/predict", "field": "predictions"},
            "feedback": {"labels": "classes", "window": "10m"},
            "experiment": {
                "key": {"header": "X-User"},
                "weights": {"a": 50, "b": 50},
                "metric": "accuracy",
                "baseline": 0.8,
                "effect": 0.15,
                "alpha": 0.05,
                "power": 0.8,
                "duration": "150s",
            },
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


class KeyedUsers(threading.Thread):
    """USERS users, each with its own X-User key, send iris rows; every answer's variant is kept per
    user, and its true class is posted as the label right away (in batches)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.rows = iris_rows()
        self.halt = threading.Event()
        self.variants: dict[str, list[str | None]] = {}
        self.failures: list[str] = []
        self.joined = 0

    def run(self) -> None:
        rng = random.Random(16)
        labels: list[dict[str, Any]] = []
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.halt.is_set():
                user = f"user-{rng.randrange(USERS)}"
                row, truth = rng.choice(self.rows)
                r = client.post("/predict", json={"features": [row]}, headers={"X-User": user})
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text[:100]}")
                    continue
                self.variants.setdefault(user, []).append(r.headers.get("x-aicd-variant"))
                labels.append({"request_id": r.headers["x-request-id"], "label": truth})
                if len(labels) >= 25:
                    answer = client.post("/_aicd/feedback", json={"labels": labels})
                    labels = []
                    if answer.status_code != 200:
                        self.failures.append(f"feedback {answer.status_code}")
                    else:
                        self.joined += answer.json().get("joined", 0)


@pytest.mark.parametrize("candidate", ["better", "worse", "equal"])
def test_experiment_keeps_users_on_their_variant_and_promotes_the_winner(
    tmp_path: Path, home: Path, model: Path, candidate: str
) -> None:
    auto = candidate != "equal"
    envs = environments(auto_promote=auto)
    wrong = {"IRIS_WRONG_SHARE": str(WRONG)}
    knobs_a = wrong if candidate == "better" else {}
    knobs_b = wrong if candidate == "worse" else {}
    assert wrong_share_of(iris_rows(), WRONG) == pytest.approx(0.2, abs=0.01)
    v1 = make_release(
        tmp_path, "v1", model, environments=envs, service_env=knobs_a, analysis=TOLERANT_ANALYSIS
    )
    done = cli(home, v1, "deploy", ".", "--env", "prod")
    assert done.returncode == 0, done.stdout + done.stderr
    url = str(cli_json(home, tmp_path, "env", "status", "prod")["url"])
    v2 = make_release(
        tmp_path, "v2", model, environments=envs, service_env=knobs_b, analysis=TOLERANT_ANALYSIS
    )
    settings = envs["prod"]["experiment"]
    needed = Design(baseline=settings["baseline"], effect=settings["effect"]).per_variant()
    env = {**clean_env(), "AICD_HOME": str(home)}
    users = KeyedUsers(url)
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
        out = deploying.stdout + deploying.stderr
        if not auto:  # paused with the verdict: promote b by hand
            assert deploying.returncode == 0, out
            assert "no variant is significantly better" in out, out
            promoted = cli(home, tmp_path, "promote", "prod", "--variant", "b")
            assert promoted.returncode == 0, promoted.stdout + promoted.stderr
            out += promoted.stdout + promoted.stderr
    finally:
        users.halt.set()
        users.join(timeout=60)
    last = cli_json(home, tmp_path, "env", "history", "prod")[0]
    experiment = (last.get("analysis") or {}).get("experiment") or {}
    print(
        f"\n{candidate}: {sum(map(len, users.variants.values()))} requests from {len(users.variants)} users, "
        f"{users.joined} labels joined; design: {needed} labels per variant; {last['status']}: "
        f"{experiment.get('reason')}\n{out[-800:]}"
    )
    assert users.failures == []
    # during the experiment (answers with a variant) every user saw one variant only, request by request
    during = {user: [v for v in seen if v] for user, seen in users.variants.items()}
    assert sum(map(len, during.values())) >= 2 * needed
    assert all(len(set(seen)) == 1 for seen in during.values() if seen), during
    assert {seen[0] for seen in during.values() if seen} == {"a", "b"}
    assert experiment["design"]["samples_per_variant"] == needed
    assert min(experiment["samples"].values()) >= needed
    status = cli_json(home, tmp_path, "env", "status", "prod")
    if candidate == "worse":
        assert deploying.returncode == 1, out
        assert last["status"] == "rejected" and "a (r1) serves all traffic" in last["reason"], last
        assert experiment["verdict"] == "no difference" and experiment["winner"] == "a", experiment
        assert experiment["comparisons"][0]["difference"] < -0.1
        assert status["environment"]["stable_revision"] == "r1"
        assert [r["revision"] for r in status["revisions"]] == ["r1"]  # b stopped
        return
    assert last["status"] == "succeeded", last
    assert status["environment"]["stable_revision"] == "r2"
    if candidate == "better":
        assert deploying.returncode == 0, out
        assert experiment["verdict"] == "winner" and experiment["winner"] == "b", experiment
        assert last["reason"] == experiment["reason"]  # `aicd env history` shows the verdict
        assert experiment["comparisons"][0]["difference"] > 0.1
    else:
        assert experiment["verdict"] == "no difference" and experiment["winner"] == "a", experiment
        assert experiment["promoted_by_hand"] == "b"


def test_three_variants_with_an_earlier_revision_started_again(
    tmp_path: Path, home: Path, model: Path
) -> None:
    """a = r2 (wrong on 20% of the rows), b = r3 and c = r1 (both right): r1 is started again from
    its release; b or c wins, becomes stable, and the other two revisions stop."""
    envs = environments(auto_promote=True)
    envs["prod"]["experiment"] = {**envs["prod"]["experiment"], "weights": {"a": 34, "b": 33, "c": 33},
                                  "revisions": {"c": "r1"}}  # fmt: skip
    wrong = {"IRIS_WRONG_SHARE": str(WRONG)}
    for name, knobs, extra in (("v1", {}, ()), ("v2", wrong, ("--strategy", "recreate"))):
        release = make_release(
            tmp_path, name, model, environments=envs, service_env=knobs, analysis=TOLERANT_ANALYSIS
        )
        done = cli(home, release, "deploy", ".", "--env", "prod", *extra)
        assert done.returncode == 0, done.stdout + done.stderr
    url = str(cli_json(home, tmp_path, "env", "status", "prod")["url"])
    v3 = make_release(tmp_path, "v3", model, environments=envs, analysis=TOLERANT_ANALYSIS)
    users = KeyedUsers(url)
    users.start()
    try:
        deploying = cli(home, v3, "deploy", ".", "--env", "prod", timeout=300)
    finally:
        users.halt.set()
        users.join(timeout=60)
    out = deploying.stdout + deploying.stderr
    last = cli_json(home, tmp_path, "env", "history", "prod")[0]
    experiment = (last.get("analysis") or {}).get("experiment") or {}
    print(f"\nthree variants: {experiment.get('reason')}\n{out[-600:]}")
    assert users.failures == []
    during = {user: [v for v in seen if v] for user, seen in users.variants.items()}
    assert all(len(set(seen)) == 1 for seen in during.values() if seen)
    assert {seen[0] for seen in during.values() if seen} == {"a", "b", "c"}
    assert experiment["variants"] == {"a": "r2", "b": "r3", "c": "r1"}
    assert experiment["design"]["alpha_each"] == 0.025
    assert experiment["verdict"] == "winner" and experiment["winner"] in ("b", "c"), experiment
    status = cli_json(home, tmp_path, "env", "status", "prod")
    kept = experiment["variants"][experiment["winner"]]
    assert status["environment"]["stable_revision"] == kept
    if kept == "r3":
        assert deploying.returncode == 0 and last["status"] == "succeeded", out
    else:
        assert deploying.returncode == 1 and last["status"] == "rejected", out
    deadline = time.monotonic() + 60  # the losers stop (r2 after the rollback window when b won)
    while len(status["revisions"]) > 1 and time.monotonic() < deadline:
        time.sleep(0.5)
        status = cli_json(home, tmp_path, "env", "status", "prod")
    assert [r["revision"] for r in status["revisions"]] == [kept]
