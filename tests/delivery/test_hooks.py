"""Registry events as signed webhooks: the real `aicd` CLI, a real receiver on 127.0.0.1, retries."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from aicd.delivery.hooks import add_hook, deliveries, emit, load_hooks, sign
from aicd.errors import ConfigError
from aicd_testing import aicd, clean_env


class Receiver(ThreadingHTTPServer):
    """Answers 500 to the first ``fail_first`` deliveries, then 204; keeps what it got."""

    def __init__(self, fail_first: int = 0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fail_first = fail_first
        self.got: list[tuple[dict[str, str], bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
        failing = len(self.server.got) <= self.server.fail_first
        self.send_response(500 if failing else 204)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(fail_first=1)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def wait_for(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_register_and_alias_send_signed_events_with_retries_and_a_log(
    tmp_path: Path, receiver: Receiver
) -> None:
    env = {**clean_env(), "AICD_HOME": str(tmp_path / "home"), "HOOK_SECRET": "s3cret-for-the-test-0123"}
    added = aicd(tmp_path, "hooks", "add", receiver.url, "--secret-env", "HOOK_SECRET", "--json", env=env)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["secret"] is None  # taken from the variable: not shown
    assert "s3cret" not in (tmp_path / "home" / "hooks.json").read_text()  # encrypted at rest
    (tmp_path / "model.bin").write_bytes(b"weights")
    started = time.monotonic()
    done = aicd(tmp_path, "model", "register", "iris", "model.bin", "--alias", "staging", env=env)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30  # the sender is detached: a failing receiver holds nothing up
    moved = aicd(tmp_path, "model", "alias", "iris", "production", "1", env=env)
    assert moved.returncode == 0, moved.stderr
    wait_for(lambda: len(receiver.got) >= 4)  # 3 events, one retried after a 500
    bodies = {}
    for headers, body in receiver.got:
        expected = "sha256=" + hmac.new(b"s3cret-for-the-test-0123", body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-hub-signature-256"], expected)
        doc = json.loads(body)
        assert headers["x-aicd-event"] == doc["event"] and headers["x-aicd-delivery"] == doc["delivery"]
        bodies[(doc["event"], doc["data"].get("alias"))] = doc["data"]
    assert bodies[("model.registered", None)]["model"] == "iris"
    assert bodies[("model.registered", None)]["version"] == 1
    assert bodies[("alias.moved", "staging")]["version"] == 1
    assert bodies[("alias.moved", "production")]["version"] == 1
    log = aicd(tmp_path, "hooks", "log", "--json", env=env)
    attempts = json.loads(log.stdout)
    assert [a["status"] for a in attempts].count(500) == 1
    assert sum(1 for a in attempts if a["ok"]) == 3
    assert all("s3cret" not in json.dumps(a) for a in attempts)
    listed = aicd(tmp_path, "hooks", "list", "--json", env=env)
    assert [h["url"] for h in json.loads(listed.stdout)] == [receiver.url]
    assert "secret" not in listed.stdout


def test_a_receiver_that_is_gone_is_retried_then_logged_and_nothing_fails(tmp_path: Path) -> None:
    home = tmp_path / "home"
    hook, secret = add_hook(home, "http://127.0.0.1:1/hook", ["deployment.finished"])
    assert len(secret) >= 32 and load_hooks(home)[0].id == hook.id
    from aicd.delivery import hooks

    original = hooks.BACKOFF
    hooks.BACKOFF = 0.01
    try:
        delivery = emit(
            home, "deployment.finished", {"environment": "prod", "status": "succeeded"}, wait=True
        )
    finally:
        hooks.BACKOFF = original
    assert delivery is not None
    attempts = deliveries(home)
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 4, 5]
    assert all(not a["ok"] and a["error"] for a in attempts)
    assert emit(home, "model.registered", {"model": "x"}) is None  # no hook wants it: nothing queued


def test_bad_hooks_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="http:// or https://"):
        add_hook(tmp_path, "ftp://example.com/x")
    with pytest.raises(ConfigError, match="no user or password"):
        add_hook(tmp_path, "https://u:p@example.com/x")
    with pytest.raises(ConfigError, match=r"choose from model\.registered"):
        add_hook(tmp_path, "https://example.com/x", ["model.deleted"])
    with pytest.raises(ConfigError, match="at least 16"):
        add_hook(tmp_path, "https://example.com/x", secret="short")
    assert sign("key", b"body") == "sha256=" + hmac.new(b"key", b"body", hashlib.sha256).hexdigest()
    done = aicd(tmp_path, "hooks", "remove", "nope", env={**clean_env(), "AICD_HOME": str(tmp_path)})
    assert done.returncode != 0 and "no hook 'nope'" in done.stderr and "Traceback" not in done.stderr
