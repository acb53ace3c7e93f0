"""Rollouts end to end: the real `aicd` CLI, the environment agent, the real iris service, real traffic.

Every test deploys releases of examples/iris-service (Flask + scikit-learn) through `aicd deploy`
while a load generator (threads with keep-alive HTTP connections) posts predictions to the
environment's address, and counts every failed request.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rollout_testing import ROW, TOLERANT_ANALYSIS, Load, cli, cli_json, make_release, trained_model

from aicd_testing import AICD, clean_env

pytest.importorskip("sklearn", reason="the iris example needs scikit-learn: pip install -e '.[examples]'")
pytest.importorskip("flask", reason="the iris example needs flask: pip install -e '.[examples]'")

CANARY = {
    "strategy": "canary",
    "steps": [{"set_weight": 25}, {"pause": "3s"}, {"set_weight": 50}, {"pause": "3s"}],
    "analysis_interval": "1s",
    "rollback_window": "1s",
}
BLUE_GREEN = {"strategy": "blue-green", "rollback_window": "2s"}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_model(tmp_path_factory.mktemp("iris"))


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    yield home
    listed = cli(home, tmp_path, "env", "list", "--json")
    for env in json.loads(listed.stdout or "[]") if listed.returncode == 0 else []:
        cli(home, tmp_path, "env", "stop", env["name"])


def deploy(home: Path, release: Path, env: str, *extra: str) -> tuple[int, str]:
    done = cli(home, release, "deploy", ".", "--env", env, *extra)
    return done.returncode, done.stdout + done.stderr


def url_of(home: Path, cwd: Path, env: str) -> str:
    return str(cli_json(home, cwd, "env", "status", env)["url"])


def deployments(home: Path, cwd: Path, env: str) -> list[dict[str, Any]]:
    return list(cli_json(home, cwd, "env", "history", env))


def test_blue_green_then_canary_under_steady_load_fail_no_request(
    tmp_path: Path, home: Path, model: Path
) -> None:
    envs = {"prod": BLUE_GREEN}
    code, out = deploy(home, make_release(tmp_path, "v1", model, environments=envs), "prod")
    assert code == 0, out
    url = url_of(home, tmp_path, "prod")
    load = Load(url).start()
    try:
        time.sleep(0.5)
        code, out = deploy(home, make_release(tmp_path, "v2", model, environments=envs), "prod")
        assert code == 0, out
        assert "all traffic on r2" in out
        during_blue_green = load.total
        envs = {"prod": CANARY}
        code, out = deploy(home, make_release(tmp_path, "v3", model, environments=envs), "prod")
        assert code == 0, out
        assert "traffic: r2 75%, r3 25%" in out and "r3 promoted" in out
        time.sleep(0.5)
    finally:
        load.stop()
    print(f"\nblue-green then canary: {load.total} requests ({during_blue_green} by the end of blue-green), "
          f"failed: {len(load.failures)}")  # fmt: skip
    assert load.failures == [], load.failures[:5]
    assert load.total > 300
    history = deployments(home, tmp_path, "prod")
    assert [(d["revision"], d["strategy"], d["status"]) for d in history] == [
        ("r3", "canary", "succeeded"),
        ("r2", "blue-green", "succeeded"),
        ("r1", "blue-green", "succeeded"),
    ]
    status = cli_json(home, tmp_path, "env", "status", "prod")
    assert status["environment"]["stable_revision"] == "r3"
    assert status["weights"].get("r3") == 100
    # the address keeps serving the new revision
    answer = httpx.post(f"{url}/predict", json=ROW)
    assert answer.status_code == 200 and answer.json()["predictions"] == [0, 2]


def _median_latency_ms(url: str, n: int = 200) -> float:
    samples = []
    with httpx.Client(base_url=url) as client:
        for _ in range(n):
            started = time.perf_counter()
            client.post("/predict", json=ROW).raise_for_status()
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


@pytest.mark.parametrize("fault", ["errors", "slow"])
def test_a_bad_canary_is_rolled_back_automatically(
    tmp_path: Path, home: Path, model: Path, fault: str
) -> None:
    envs = {"prod": {**CANARY, "steps": [{"set_weight": 30}, {"pause": "8s"}]}}
    code, out = deploy(home, make_release(tmp_path, "v1", model, environments=envs), "prod")
    assert code == 0, out
    url = url_of(home, tmp_path, "prod")
    if fault == "errors":
        knobs = {"IRIS_FAULT_RATE": "0.3"}
    else:  # three times slower: add twice the median latency v1 has through the router
        knobs = {"IRIS_EXTRA_LATENCY_MS": f"{max(2.0, 2 * _median_latency_ms(url)):.1f}"}
    load = Load(url).start()
    try:
        code, out = deploy(
            home, make_release(tmp_path, "bad", model, environments=envs, service_env=knobs), "prod"
        )
        after = time.time()
        time.sleep(2.0)
    finally:
        load.stop()
    assert code == 1, out
    assert "rolled back" in out
    last = deployments(home, tmp_path, "prod")[0]
    assert (last["revision"], last["status"]) == ("r2", "rolled_back")
    timing = last["analysis"]["rollback"]
    switched = timing["decided_at"] + timing["switch_ms"] / 1000  # requests sent after it: all to stable
    print(f"\nbad canary ({fault}, {knobs}): rolled back: {last['reason']}\n"
          f"decision -> all traffic on stable: {timing['switch_ms']:.3f} ms; canary drained after "
          f"{timing['drain_ms']:.1f} ms; requests {load.total}, failed {len(load.failures)} "
          f"(all sent before the switch); sent after it: {load.count_after(switched)} requests, "
          f"{load.failed_after(switched)} failed")  # fmt: skip
    assert load.failed_after(switched) == 0
    assert load.count_after(switched) > 50
    assert timing["switch_ms"] < 50
    assert after - timing["decided_at"] < 10
    if fault == "slow":
        assert "latency" in last["reason"], last["reason"]
        assert load.failures == []
    else:
        assert "success_rate" in last["reason"] or "errors" in last["reason"], last["reason"]
    status = cli_json(home, tmp_path, "env", "status", "prod")
    assert status["environment"]["stable_revision"] == "r1"
    assert [r["revision"] for r in status["revisions"]] == ["r1"]
    incidents = cli_json(home, tmp_path, "env", "history", "prod", "--events")
    assert any(e["kind"] == "deployment.rolled_back" for e in incidents)


def test_paused_canary_refuses_a_second_deploy_then_promote_and_rollback(
    tmp_path: Path, home: Path, model: Path
) -> None:
    envs = {"prod": {**CANARY, "steps": [{"set_weight": 20}, {"pause": {}}], "rollback_window": "60s"}}
    assert deploy(home, make_release(tmp_path, "v1", model, environments=envs), "prod")[0] == 0
    code, out = deploy(home, make_release(tmp_path, "v2", model, environments=envs), "prod")
    assert code == 0 and "is paused" in out, out
    code, out = deploy(home, make_release(tmp_path, "v3", model, environments=envs), "prod")
    assert code != 0 and "in progress (paused)" in out and "aicd promote prod" in out, out
    done = cli(home, tmp_path, "promote", "prod")
    assert done.returncode == 0 and "succeeded" in done.stdout, done.stdout + done.stderr
    # r1 is still up (rollback window): the rollback is one switch
    done = cli(home, tmp_path, "rollback", "prod")
    assert done.returncode == 0, done.stdout + done.stderr
    history = deployments(home, tmp_path, "prod")
    assert [(d["revision"], d["strategy"], d["status"]) for d in history[:2]] == [
        ("r1", "rollback", "succeeded"),
        ("r2", "canary", "rolled_back"),
    ]
    assert history[0]["analysis"]["rollback"]["switch_ms"] < 50
    assert httpx.post(f"{url_of(home, tmp_path, 'prod')}/predict", json=ROW).status_code == 200


def test_abort_sends_everything_back_to_stable(tmp_path: Path, home: Path, model: Path) -> None:
    envs = {"prod": {**CANARY, "steps": [{"set_weight": 50}, {"pause": {}}]}}
    assert deploy(home, make_release(tmp_path, "v1", model, environments=envs), "prod")[0] == 0
    assert deploy(home, make_release(tmp_path, "v2", model, environments=envs), "prod")[0] == 0
    done = cli(home, tmp_path, "abort", "prod")
    assert done.returncode == 0 and "aborted" in done.stdout + done.stderr
    last = deployments(home, tmp_path, "prod")[0]
    assert (last["status"], last["reason"]) == ("aborted", f"aborted by {os.environ.get('USER') or 'local'}")
    status = cli_json(home, tmp_path, "env", "status", "prod")
    assert status["weights"] == {"r1": 100}


def test_a_service_that_never_gets_healthy_fails_cleanly_and_stable_keeps_serving(
    tmp_path: Path, home: Path, model: Path
) -> None:
    envs = {"prod": BLUE_GREEN}
    assert deploy(home, make_release(tmp_path, "v1", model, environments=envs), "prod")[0] == 0
    url = url_of(home, tmp_path, "prod")
    never = {"command": [sys.executable, "-c", "import time; time.sleep(600)"], "readiness_timeout": "2s"}
    load = Load(url, workers=2).start()
    try:
        started = time.monotonic()
        code, out = deploy(
            home, make_release(tmp_path, "v2", model, environments=envs, service=never), "prod"
        )
        took = time.monotonic() - started
    finally:
        load.stop()
    assert code == 1, out
    assert "r2 did not start" in out and "r1 keeps serving" in out, out
    assert took < 15
    assert load.failures == [] and load.total > 20
    last = deployments(home, tmp_path, "prod")[0]
    assert (last["revision"], last["status"]) == ("r2", "failed")
    assert cli_json(home, tmp_path, "env", "status", "prod")["environment"]["stable_revision"] == "r1"


def test_bad_input_gets_clear_errors(tmp_path: Path, home: Path, model: Path) -> None:
    release = make_release(tmp_path, "v1", model)
    done = cli(home, tmp_path, "promote", "nosuch")
    assert done.returncode == 1 and "no environment 'nosuch'" in done.stderr, done.stderr
    done = cli(home, release, "deploy", str(tmp_path / "missing"), "--env", "prod", "--config", "aicd.yml")
    assert done.returncode == 1 and "does not exist" in done.stderr, done.stderr
    done = cli(home, release, "deploy", ".")
    assert done.returncode == 2 and "--env" in done.stderr, done.stderr
    done = cli(home, release, "deploy", ".", "--env", "prod", "--step", "weight=120", "--strategy", "canary")
    assert done.returncode == 2 and "0 to 100" in done.stderr, done.stderr
    (release / "aicd.yml").write_text(
        "service:\n  command: python app.py\nenvironments:\n  prod:\n    strategy: canery\n"
    )
    done = cli(home, release, "deploy", ".", "--env", "prod")
    assert done.returncode == 2 and "aicd.yml:5" in done.stderr and "canary" in done.stderr, done.stderr
    # a taken port: named, with its holder
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        release = make_release(tmp_path, "v1b", model, environments={"web": {"port": port}})
        code, out = deploy(home, release, "web")
        assert code != 0 and f"port {port} is taken" in out, out


def test_the_agent_restarts_and_finds_its_service_again(tmp_path: Path, home: Path, model: Path) -> None:
    assert (
        deploy(home, make_release(tmp_path, "v1", model, environments={"prod": BLUE_GREEN}), "prod")[0] == 0
    )
    before = cli_json(home, tmp_path, "env", "status", "prod")
    pids = [i["pid"] for r in before["revisions"] for i in r["instances"]]
    os.kill(before["agent_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while cli(home, tmp_path, "env", "list", "--json").stdout.count('"agent": "running"'):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    done = cli(home, tmp_path, "env", "start", "prod")
    assert done.returncode == 0, done.stderr
    after = cli_json(home, tmp_path, "env", "status", "prod")
    assert after["url"] == before["url"]
    assert [i["pid"] for r in after["revisions"] for i in r["instances"]] == pids
    assert httpx.post(f"{after['url']}/predict", json=ROW).status_code == 200


def test_blue_green_post_promotion_analysis_switches_back(tmp_path: Path, home: Path, model: Path) -> None:
    envs = {"prod": {**BLUE_GREEN, "post_promotion_analysis": "4s", "analysis_interval": "1s"}}
    assert deploy(home, make_release(tmp_path, "v1", model, environments=envs), "prod")[0] == 0
    load = Load(url_of(home, tmp_path, "prod")).start()
    try:
        bad = make_release(tmp_path, "v2", model, environments=envs, service_env={"IRIS_FAULT_RATE": "0.5"})
        code, out = deploy(home, bad, "prod")
        time.sleep(1.0)
    finally:
        load.stop()
    assert code == 1 and "all traffic on r2" in out and "rolled back" in out, out
    last = deployments(home, tmp_path, "prod")[0]
    assert (last["revision"], last["status"]) == ("r2", "rolled_back")
    timing = last["analysis"]["rollback"]
    assert load.failed_after(timing["decided_at"] + timing["switch_ms"] / 1000) == 0
    assert cli_json(home, tmp_path, "env", "status", "prod")["environment"]["stable_revision"] == "r1"


def test_blue_green_pre_promotion_analysis_checks_the_preview_before_any_user_sees_it(
    tmp_path: Path, home: Path, model: Path
) -> None:
    envs = {"prod": {**BLUE_GREEN, "pre_promotion_analysis": "4s", "analysis_interval": "1s"}}
    assert deploy(home, make_release(tmp_path, "v1", model, environments=envs), "prod")[0] == 0
    load = Load(url_of(home, tmp_path, "prod")).start()
    bad = make_release(tmp_path, "v2", model, environments=envs, service_env={"IRIS_FAULT_RATE": "0.5"})
    env = {**clean_env(), "AICD_HOME": str(home)}
    process = subprocess.Popen(
        [*AICD, "deploy", ".", "--env", "prod"],
        cwd=bad,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        preview = None
        assert process.stderr is not None
        for line in process.stderr:
            found = re.search(r"preview of r2 at (http://\S+)", line)
            if found:
                preview = found.group(1)
                break
        assert preview is not None, "no preview address was announced"
        answers = []
        with httpx.Client(base_url=preview) as client:  # the smoke test a deploy job would run
            for _ in range(100):
                try:
                    answers.append(client.post("/predict", json=ROW).status_code)
                except httpx.TransportError:  # the analysis failed early: the preview is gone
                    break
        out, err = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
        load.stop()
    assert 500 in answers and process.returncode == 1, out + err
    assert "analysis failed" in out + err
    assert load.failures == [] and load.total > 50  # users only ever reached r1
    last = deployments(home, tmp_path, "prod")[0]
    assert (last["revision"], last["status"]) == ("r2", "rejected")  # never served a user: no change failure


def test_restore_agents_brings_back_serving_environments(tmp_path: Path, home: Path, model: Path) -> None:
    from aicd.deploy.client import locate
    from aicd.deploy.restore import restore_agents
    from aicd.store.deployments import open_deploy_store

    for env in ("web", "old"):
        assert deploy(home, make_release(tmp_path, f"{env}1", model), env)[0] == 0
    assert cli(home, tmp_path, "env", "stop", "old").returncode == 0
    before = cli_json(home, tmp_path, "env", "status", "web")
    os.kill(before["agent_pid"], signal.SIGKILL)
    location = locate(tmp_path, {"AICD_HOME": str(home)})
    deadline = time.monotonic() + 10
    with open_deploy_store(location.database_url) as store:
        while True:  # the old agent's socket stops answering once the process is gone
            started = restore_agents(store, location.home, location.database_url)
            if started or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert started == ["web"]
    after = cli_json(home, tmp_path, "env", "status", "web")
    assert after["url"] == before["url"] and after["agent_pid"] != before["agent_pid"]
    assert httpx.post(f"{after['url']}/predict", json=ROW).status_code == 200
    assert cli_json(home, tmp_path, "env", "status", "old")["agent"] == "stopped"


@pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy is not installed (apt-get install haproxy)")
def test_haproxy_as_the_router_canary_then_bad_canary(tmp_path: Path, home: Path, model: Path) -> None:
    envs = {"prod": {**CANARY, "router": "haproxy", "steps": [{"set_weight": 30}, {"pause": "4s"}]}}
    # about HAProxy's routing and an error rollback: latency is judged with TOLERANT_ANALYSIS

    def release(name: str, **knobs: str) -> Path:
        return make_release(
            tmp_path, name, model, environments=envs, service_env=knobs, analysis=TOLERANT_ANALYSIS
        )

    assert deploy(home, release("v1"), "prod")[0] == 0
    load = Load(url_of(home, tmp_path, "prod")).start()
    try:
        code, out = deploy(home, release("v2"), "prod")
        good_failures = list(load.failures)
        bad = release("v3", IRIS_FAULT_RATE="0.3")
        bad_code, bad_out = deploy(home, bad, "prod")
        time.sleep(1.0)
    finally:
        load.stop()
    assert code == 0 and "r2 promoted" in out, out
    assert good_failures == []
    assert bad_code == 1 and "rolled back" in bad_out, bad_out
    last = deployments(home, tmp_path, "prod")[0]
    timing = last["analysis"]["rollback"]
    assert load.failed_after(timing["decided_at"] + timing["switch_ms"] / 1000) == 0
    status = cli_json(home, tmp_path, "env", "status", "prod")
    assert status["environment"]["stable_revision"] == "r2"


def test_env_stop_during_a_paused_canary_aborts_it(tmp_path: Path, home: Path, model: Path) -> None:
    envs = {"prod": {**CANARY, "steps": [{"set_weight": 50}, {"pause": {}}]}}
    assert deploy(home, make_release(tmp_path, "v1", model, environments=envs), "prod")[0] == 0
    assert deploy(home, make_release(tmp_path, "v2", model, environments=envs), "prod")[0] == 0
    url = url_of(home, tmp_path, "prod")
    done = cli(home, tmp_path, "env", "stop", "prod")
    assert done.returncode == 0, done.stderr
    last = deployments(home, tmp_path, "prod")[0]
    assert last["status"] == "aborted" and "the environment was stopped" in last["reason"]
    deadline = time.monotonic() + 20
    while True:  # the address stops answering once the agent is gone
        try:
            httpx.get(f"{url}/healthz", timeout=1)
        except httpx.TransportError:
            break
        assert time.monotonic() < deadline, "the environment still answers after `aicd env stop`"
        time.sleep(0.1)
    assert cli_json(home, tmp_path, "env", "status", "prod")["environment"]["status"] == "stopped"


def test_a_rollout_goes_on_when_the_deploy_command_is_interrupted(
    tmp_path: Path, home: Path, model: Path
) -> None:
    envs = {"prod": {**CANARY, "steps": [{"set_weight": 50}, {"pause": "2s"}]}}
    assert deploy(home, make_release(tmp_path, "v1", model, environments=envs), "prod")[0] == 0
    env = {**clean_env(), "AICD_HOME": str(home)}
    release = make_release(tmp_path, "v2", model, environments=envs)
    process = subprocess.Popen(
        [*AICD, "deploy", ".", "--env", "prod"], cwd=release, env=env, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    for line in process.stderr:
        if "step 1/2" in line:
            break
    process.send_signal(signal.SIGINT)  # Ctrl-C on `aicd deploy`
    process.wait(timeout=30)
    deadline = time.monotonic() + 60
    while (last := deployments(home, tmp_path, "prod")[0])["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert (last["revision"], last["status"]) == ("r2", "succeeded")
