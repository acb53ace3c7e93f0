"""aicd's judge for Argo Rollouts and Flagger, against the real server (`aicd server`, SQLite) over HTTP.

No cluster runs here, so the contracts are checked as those projects document them:

Argo Rollouts, docs/analysis/web.md ("Web Metrics"): "The webhook response must return JSON
content. The result of the optional `jsonPath` expression will be assigned to the `result`
variable that can be referenced in the `successCondition` and `failureCondition` expressions",
and "It is possible to use a POST or PUT requests, by specifying the `method` and `body` fields"
with headers such as ``Authorization: Bearer {{ args.api-token }}``. The test reads
examples/argo-rollouts/analysis-template.yaml, fills in its args, sends each metric's request as
Argo would (method, url, headers, body), applies its jsonPath and evaluates its conditions (the
two expression forms the example uses; Argo itself evaluates them with expr).

Flagger, docs/gitbook/usage/webhooks.md: "Webhook payload (HTTP POST)":
``{"name": "podinfo", "namespace": "test", "phase": "Progressing", "metadata": {"test": "all",
"token": "16688eb5e9f289f1991c"}}``; "Response status codes: 200-202 - advance canary by
increasing the traffic weight; timeout or non-2xx - halt advancement and increment failed
checks"; rollback hooks: "If a rollback hook returns a successful HTTP status code, Flagger will
stop the analysis and mark the canary release as failed". The test reads
examples/flagger/canary.yaml and calls each of its webhooks with that payload.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import yaml
from serverproc import ServerProc, make_user

ROOT = Path(__file__).resolve().parents[2]
ARGO_TEMPLATE = ROOT / "examples" / "argo-rollouts" / "analysis-template.yaml"
FLAGGER_CANARY = ROOT / "examples" / "flagger" / "canary.yaml"
API = "/api/v1"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    home = tmp_path_factory.mktemp("integrations") / "home"
    proc = ServerProc(home, f"sqlite:///{home / 'aicd.db'}")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop(check=False)


def samples(seed: int, latency: float, errors: int, n: int = 200) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    error = [0.0] * n
    for i in range(errors):
        error[i * (n // max(errors, 1))] = 1.0
    return {
        "latency_ms": [round(float(v), 3) for v in rng.normal(latency, latency * 0.05, n)],
        "error": error,
    }


BASELINE = samples(1, 100.0, 2)
SAME = samples(2, 100.0, 2)  # the same service again: passes
SLOWER = samples(3, 150.0, 2)  # 50% slower: fails (latency is critical in the examples)


# -- Argo Rollouts ------------------------------------------------------------------------------


def fill(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*args\.([\w-]+)\s*\}\}", lambda m: args[m.group(1)], text)


def json_path(doc: Any, path: str) -> Any:
    """The `{$.a.b}` form of Kubernetes' JSONPath that the example uses."""
    match = re.fullmatch(r"\{\$\.([\w.-]+)\}", path)
    assert match, path
    for part in match.group(1).split("."):
        doc = doc[part]
    return doc


def condition(expression: str, result: Any) -> bool:
    """`result == "text"` and `result >= N` (the forms the example uses)."""
    match = re.fullmatch(r'result == "([^"]*)"', expression.strip())
    if match:
        return bool(result == match.group(1))
    match = re.fullmatch(r"result >= ([\d.]+)", expression.strip())
    assert match, expression
    return bool(float(result) >= float(match.group(1)))


def run_argo_metric(server: ServerProc, metric: dict[str, Any], args: dict[str, str]) -> tuple[Any, str]:
    """One measurement as Argo takes it: (result, Successful | Failed | Inconclusive)."""
    web = metric["provider"]["web"]
    url = urlsplit(fill(web["url"], args))
    headers = {h["key"]: fill(h["value"], args) for h in web.get("headers", [])}
    response = httpx.request(
        web.get("method", "GET"),
        f"{server.url}{url.path}",
        headers=headers,
        content=fill(web["body"], args).encode(),
        timeout=web.get("timeoutSeconds", 10),
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    result = json_path(response.json(), web["jsonPath"])
    if condition(metric["successCondition"], result):
        return result, "Successful"
    if "failureCondition" in metric and condition(metric["failureCondition"], result):
        return result, "Failed"
    return result, "Failed" if "failureCondition" not in metric else "Inconclusive"


def test_the_example_analysis_template_passes_a_good_canary_and_fails_a_slow_one(server: ServerProc) -> None:
    template = yaml.safe_load(ARGO_TEMPLATE.read_text())
    assert template["kind"] == "AnalysisTemplate"
    metrics = {m["name"]: m for m in template["spec"]["metrics"]}
    base = {"aicd-url": "http://aicd.aicd.svc:8080", "aicd-token": server.admin_token}
    base["baseline"] = json.dumps(BASELINE)

    good = {**base, "canary": json.dumps(SAME)}
    assert run_argo_metric(server, metrics["aicd-verdict"], good) == ("pass", "Successful")
    score, phase = run_argo_metric(server, metrics["aicd-score"], good)
    assert phase == "Successful" and score == 100
    assert run_argo_metric(server, metrics["aicd-latency"], good) == ("Pass", "Successful")

    slow = {**base, "canary": json.dumps(SLOWER)}
    assert run_argo_metric(server, metrics["aicd-verdict"], slow) == ("fail", "Failed")
    score, phase = run_argo_metric(server, metrics["aicd-score"], slow)
    assert phase == "Failed" and score == 0  # a critical metric failed
    assert run_argo_metric(server, metrics["aicd-latency"], slow) == ("High", "Failed")


def test_the_argo_answer_is_aicd_judges_report(server: ServerProc, tmp_path: Path) -> None:
    # The same samples through `aicd judge --json` give the same verdict, score and classes.
    (tmp_path / "stable.json").write_text(json.dumps(BASELINE))
    (tmp_path / "canary.json").write_text(json.dumps(SLOWER))
    flags = ["latency_ms:increase", "error:increase"]
    cli = subprocess.run(
        [sys.executable, "-m", "aicd.cli.main", "judge", "stable.json", "canary.json", "--json"]
        + [f"--metric={f}" for f in flags],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert cli.returncode == 1, cli.stderr
    report = json.loads(cli.stdout)
    with server.client() as client:
        response = client.post(
            "/integrations/argo-rollouts/judge",
            json={"baseline": BASELINE, "canary": SLOWER, "metrics": flags},
        )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["verdict"], answer["score"]) == (report["verdict"], report["score"])
    assert answer["classification"] == {m["name"]: m["classification"] for m in report["metrics"]}
    assert answer["classification"]["latency_ms"] == "High"


def test_argo_route_bad_input_and_missing_token_are_clear_errors(server: ServerProc) -> None:
    url = f"{server.url}{API}/integrations/argo-rollouts/judge"
    body = {"baseline": BASELINE, "canary": SAME}
    response = httpx.post(url, json=body, timeout=30)
    assert response.status_code == 401
    assert "Bearer" in response.json()["error"]
    response = httpx.post(url, json=body, headers={"Authorization": "Bearer aicd_not_a_token"}, timeout=30)
    assert response.status_code == 401
    with server.client() as client:
        response = client.post(
            "/integrations/argo-rollouts/judge", json={"baseline": BASELINE, "canary": {"latency_ms": "fast"}}
        )
        assert response.status_code == 422
        assert response.json()["error"].startswith('body.canary: "latency_ms" is a string ("fast")')
        response = client.post("/integrations/argo-rollouts/judge", json={"baseline": BASELINE, "canary": {}})
        assert response.status_code == 422
        assert "body.canary: holds no samples" in response.json()["error"]
        response = client.post(
            "/integrations/argo-rollouts/judge", json={**body, "metrics": ["latency_ms:sideways"]}
        )
        assert response.status_code == 422
        assert "sideways" in response.json()["error"]
        response = client.post("/integrations/argo-rollouts/judge", json={"baseline": BASELINE})
        assert response.status_code == 422


# -- Flagger ------------------------------------------------------------------------------------


def flagger_payload(
    canary: dict[str, Any], metadata: dict[str, str], phase: str = "Progressing"
) -> dict[str, Any]:
    """Flagger's documented webhook payload."""
    return {
        "name": canary["metadata"]["name"],
        "namespace": canary["metadata"]["namespace"],
        "phase": phase,
        "checksum": "6d2a8c9f",
        "metadata": metadata,
    }


def call_hooks(
    server: ServerProc, canary: dict[str, Any], token: str, extra: dict[str, str] | None = None
) -> dict[str, httpx.Response]:
    """Every webhook of the Canary, as Flagger calls it (no headers of its own: the token is in metadata)."""
    out = {}
    for hook in canary["spec"]["analysis"]["webhooks"]:
        metadata = {**hook.get("metadata", {}), **(extra or {})}
        metadata["token"] = token
        path = urlsplit(hook["url"]).path
        out[hook["type"]] = httpx.post(
            f"{server.url}{path}", json=flagger_payload(canary, metadata), timeout=30
        )
    return out


def test_the_example_canary_goes_on_with_a_good_canary_and_halts_a_slow_one(server: ServerProc) -> None:
    canary = yaml.safe_load(FLAGGER_CANARY.read_text())
    assert canary["kind"] == "Canary"
    namespace, name = canary["metadata"]["namespace"], canary["metadata"]["name"]
    _, token = make_user(server, "flagger-bot")  # no role on any project: judging needs none
    configured = f"{server.url}{API}/integrations/flagger/canaries/{namespace}/{name}"
    auth = {"Authorization": f"Bearer {token}"}

    # Nothing configured yet: the gate before traffic goes on, the analysis halts, no rollback.
    codes = {hook: r.status_code for hook, r in call_hooks(server, canary, token).items()}
    assert codes == {"pre-rollout": 200, "rollout": 412, "confirm-promotion": 412, "rollback": 412}

    response = httpx.put(configured, json={"baseline": BASELINE, "canary": SAME}, headers=auth, timeout=30)
    assert response.status_code == 200, response.text
    answers = call_hooks(server, canary, token)
    codes = {hook: r.status_code for hook, r in answers.items()}
    assert codes == {"pre-rollout": 200, "rollout": 200, "confirm-promotion": 200, "rollback": 412}
    assert answers["rollout"].json()["verdict"] == "pass"
    assert answers["rollback"].json()["message"].startswith("no rollback: pass")

    response = httpx.put(configured, json={"baseline": BASELINE, "canary": SLOWER}, headers=auth, timeout=30)
    assert response.status_code == 200, response.text
    answers = call_hooks(server, canary, token)
    codes = {hook: r.status_code for hook, r in answers.items()}
    assert codes == {"pre-rollout": 412, "rollout": 412, "confirm-promotion": 412, "rollback": 200}
    body = answers["rollout"].json()
    assert body["verdict"] == "fail" and body["classification"]["latency_ms"] == "High"
    assert body["message"].startswith("halt: fail")

    # The configuration is the caller's: the admin's hooks do not see flagger-bot's samples.
    admin = {hook: r.status_code for hook, r in call_hooks(server, canary, server.admin_token).items()}
    assert admin["rollout"] == 412 and admin["rollback"] == 412
    assert httpx.delete(configured, headers=auth, timeout=30).status_code == 204
    assert httpx.get(configured, headers=auth, timeout=30).status_code == 404


def test_flagger_samples_in_metadata_and_post_rollout(server: ServerProc) -> None:
    canary = yaml.safe_load(FLAGGER_CANARY.read_text())
    token = server.admin_token
    answers = call_hooks(
        server, canary, token, {"baseline": json.dumps(BASELINE), "canary": json.dumps(SAME)}
    )
    assert {h: r.status_code for h, r in answers.items()}["rollout"] == 200
    answers = call_hooks(
        server, canary, token, {"baseline": json.dumps(BASELINE), "canary": json.dumps(SLOWER)}
    )
    assert {h: r.status_code for h, r in answers.items()}["confirm-promotion"] == 412
    url = f"{server.url}{API}/integrations/flagger/post-rollout"
    response = httpx.post(url, json=flagger_payload(canary, {"token": token}, "Succeeded"), timeout=30)
    assert response.status_code == 200 and response.json()["go"] is True
    url = f"{server.url}{API}/integrations/flagger/confirm-rollout"
    response = httpx.post(url, json=flagger_payload(canary, {"token": token}, "Initialized"), timeout=30)
    assert response.status_code == 200


def test_flagger_bad_token_and_bad_metadata_halt_with_a_clear_message(server: ServerProc) -> None:
    canary = yaml.safe_load(FLAGGER_CANARY.read_text())
    url = f"{server.url}{API}/integrations/flagger/rollout"
    response = httpx.post(url, json=flagger_payload(canary, {}), timeout=30)
    assert response.status_code == 401
    assert "metadata (token: ...)" in response.json()["error"]
    response = httpx.post(url, json=flagger_payload(canary, {"token": "aicd_wrong"}), timeout=30)
    assert response.status_code == 401
    assert "aicd_wrong" not in response.text
    metadata = {"token": server.admin_token, "baseline": "{not json", "canary": json.dumps(SAME)}
    response = httpx.post(url, json=flagger_payload(canary, metadata), timeout=30)
    assert response.status_code == 422
    assert response.json()["error"].startswith("metadata.baseline: not valid JSON")
    assert server.admin_token not in response.text
    response = httpx.post(
        f"{server.url}{API}/integrations/flagger/deploy-now",
        json=flagger_payload(canary, {"token": server.admin_token}),
        timeout=30,
    )
    assert response.status_code == 422
