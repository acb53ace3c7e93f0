"""`aicd deploy` in a job of an aicd server: the release goes to the server's deploy route.

A sandboxed job cannot reach the server's environments (their agents, folders and database), so
the release folder (and the aicd.yml it is deployed with) travels as a tar.gz to
``POST /projects/{project}/environments/{env}/deployments``, with the job's CI_JOB_TOKEN. The
server records who deploys from the token, starts the rollout and streams the agent's answer:
JSON lines, progress events and then the deployment, which print as they do locally.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from aicd.cli.remote import API_PREFIX, TIMEOUT_S, Client, check, job_token_from_env, segment, server_from_env
from aicd.core.deploy_release import Rollout
from aicd.deploy.archive import pack_release
from aicd.deploy.control import decode_error
from aicd.errors import ConfigError, DeployError

Json = dict[str, Any]
DEPLOY_TIMEOUT = httpx.Timeout(TIMEOUT_S, read=None)  # a rollout with pauses takes its time


def deploy_through_server(
    rollout: Rollout,
    release_dir: Path,
    *,
    strategy: str | None,
    steps: tuple[str, ...],
    no_wait: bool,
    on_event: Callable[[Json], None] | None,
) -> Json:
    """Send the release to the server's deploy route; the agent's final answer (the deployment)."""
    project = os.environ.get("CI_PROJECT_NAME", "").strip()
    if not project:
        raise ConfigError("aicd deploy in a server job: CI_PROJECT_NAME is not set (the server sets it)")
    params: list[tuple[str, str | int | float | bool | None]] = [("wait", "false" if no_wait else "true")]
    if strategy:
        params.append(("strategy", strategy))
    params += [("step", step) for step in steps]
    path = f"/projects/{segment(project)}/environments/{segment(rollout.name)}/deployments"
    tier = os.environ.get("CI_ENVIRONMENT_TIER", "").strip()
    if tier:
        params.append(("tier", tier))
    model_version = os.environ.get("MODEL_VERSION", "").strip()
    if model_version:
        params.append(("model_version", model_version))
    with tempfile.TemporaryFile() as archive:
        pack_release(release_dir, rollout.config, archive)
        archive.seek(0)
        with Client(server_from_env(), job_token_from_env(), timeout=TIMEOUT_S) as api:
            http = httpx.Client(base_url=api.server + API_PREFIX, timeout=DEPLOY_TIMEOUT)
            headers = {
                "Authorization": f"Bearer {job_token_from_env()}",
                "Content-Type": "application/octet-stream",
            }
            try:
                with http.stream("POST", path, content=archive, params=params, headers=headers) as response:
                    if response.status_code >= 400:
                        response.read()
                        check(response)
                    return _answer(response.iter_lines(), on_event)
            except httpx.HTTPError as exc:
                raise DeployError(
                    f"cannot reach the aicd server at {api.shown}: {type(exc).__name__}"
                ) from None
            finally:
                http.close()


def _answer(lines: Any, on_event: Callable[[Json], None] | None) -> Json:
    """What `control.request` makes of the agent's lines, from the route's copy of them."""
    for line in lines:
        if not line.strip():
            continue
        message = json.loads(line)
        if "event" in message:
            if on_event is not None:
                on_event(message["event"])
            continue
        if message.get("ok"):
            result = message.get("result")
            return result if isinstance(result, dict) else {}
        raise decode_error(message.get("error") or {})
    raise DeployError(
        "the aicd server closed the deploy stream without an answer; see the environment's events"
    )
