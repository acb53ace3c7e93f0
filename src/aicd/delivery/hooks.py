"""Registry and deployment events as signed webhooks, so another system can react.

Events: ``model.registered`` (a new version), ``alias.moved`` (an alias set or moved, or removed:
``version`` null), ``deployment.finished`` (succeeded, failed, rolled back or aborted). Hooks are
configured per aicd home (locally ``.aicd/`` of the project, or ``AICD_HOME``; on a server, its
home: every project's events) with ``aicd hooks add URL``: ``home/hooks.json`` keeps
each hook's URL, events and secret, the secret encrypted with the home's key
(:class:`aicd.core.secrets.SecretBox`).

Each event is one POST of JSON::

    {"event": "alias.moved", "delivery": "9f1c...", "created": 1733470000.0, "data": {...}}

with ``X-Aicd-Event``, ``X-Aicd-Delivery`` and ``X-Hub-Signature-256: sha256=<HMAC-SHA256 of the
body with the hook's secret, hex>`` (GitHub's header: check it with a constant-time compare).

Sending never holds up what caused the event: :func:`emit` writes the event to
``home/hooks/spool/`` and starts a detached sender (``python -m aicd.delivery.hooks``) which
delivers it to every hook that wants it, with retries (5 attempts, backoff 1, 2, 4, 8 s; a 2xx
answer is a success), and appends every attempt to the delivery log ``home/hooks/deliveries.jsonl``
(hook id, URL, event, delivery id, attempt, status or error, time; never the secret or the body).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aicd.errors import ConfigError, NotFoundError

EVENTS = ("model.registered", "alias.moved", "deployment.finished")
HOOKS_FILE = "hooks.json"
HOOKS_DIR = "hooks"
LOG_FILE = "deliveries.jsonl"
ATTEMPTS = 5
BACKOFF = 1.0  # seconds before the second attempt; doubles after each
TIMEOUT = 10.0  # seconds for one attempt
USER_AGENT = "aicd-hooks/1"


@dataclass(frozen=True)
class Hook:
    id: str
    url: str
    events: tuple[str, ...]
    secret: str  # encrypted with the home's key

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "secret": self.secret,
        }

    def public(self) -> dict[str, Any]:
        """What `aicd hooks list` shows: no secret."""
        return {"id": self.id, "url": self.url, "events": list(self.events)}


def sign(secret: str, body: bytes) -> str:
    """GitHub's ``X-Hub-Signature-256`` value of ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _box(home: Path) -> Any:
    from aicd.core.secrets import SecretBox

    return SecretBox.load(home, os.environ.get("AICD_SECRET_KEY"))


def load_hooks(home: Path) -> list[Hook]:
    path = home / HOOKS_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{path}: not a hooks file aicd wrote ({exc}); remove it and add the hooks again"
        ) from None
    return [
        Hook(str(h["id"]), str(h["url"]), tuple(h["events"]), str(h["secret"])) for h in raw.get("hooks", [])
    ]


def _save(home: Path, hooks: Sequence[Hook]) -> None:
    home.mkdir(parents=True, exist_ok=True)
    path = home / HOOKS_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"hooks": [h.to_json() for h in hooks]}, handle, indent=2)
    tmp.replace(path)


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"hook URL {url!r}: must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ConfigError("hook URL: no user or password in the URL; the hook's secret signs each event")
    return url


def add_hook(
    home: Path, url: str, events: Sequence[str] = EVENTS, *, secret: str | None = None
) -> tuple[Hook, str]:
    """Add a hook; returns it and its secret (made when not given: shown once)."""
    check_url(url)
    unknown = [e for e in events if e not in EVENTS]
    if unknown or not events:
        raise ConfigError(f"hook events: {', '.join(unknown) or 'none'}; choose from {', '.join(EVENTS)}")
    if secret is not None and len(secret) < 16:
        raise ConfigError("hook secret: at least 16 characters (or leave it out: aicd makes one)")
    plain = secret or secrets.token_urlsafe(32)
    hooks = load_hooks(home)
    hook = Hook(secrets.token_hex(6), url, tuple(dict.fromkeys(events)), _box(home).encrypt(plain))
    _save(home, [*hooks, hook])
    return hook, plain


def remove_hook(home: Path, hook_id: str) -> Hook:
    hooks = load_hooks(home)
    found = [h for h in hooks if h.id == hook_id]
    if not found:
        known = ", ".join(h.id for h in hooks) or "none"
        raise NotFoundError(f"no hook {hook_id!r} (hooks: {known}); `aicd hooks list` shows them")
    _save(home, [h for h in hooks if h.id != hook_id])
    return found[0]


def emit(home: Path, event: str, data: Mapping[str, Any], *, wait: bool = False) -> str | None:
    """Queue ``event`` for every hook that wants it and start the sender; the delivery id (None: no hook).

    Never raises for a hook's sake: an event must not fail what caused it (problems are logged).
    ``wait``: deliver in this process instead (tests, the sender itself).
    """
    try:
        wanted = [h for h in load_hooks(home) if event in h.events]
    except ConfigError:
        return None
    if not wanted:
        return None
    delivery = secrets.token_hex(8)
    spool = home / HOOKS_DIR / "spool"
    try:
        spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = spool / f"{delivery}.json"
        doc = {
            "event": event,
            "delivery": delivery,
            "created": time.time(),
            "data": dict(data),
            "hooks": [h.id for h in wanted],
        }
        path.write_text(json.dumps(doc, default=str))
        if wait:
            deliver(home, path)
        else:
            subprocess.Popen(
                [sys.executable, "-m", "aicd.delivery.hooks", "--home", str(home), "--spool", str(path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                env={k: v for k, v in os.environ.items() if not k.startswith("CI_")},
            )
    except OSError as exc:
        _log(home, {"event": event, "delivery": delivery, "error": f"not queued: {exc}"})
        return None
    return delivery


def deliver(home: Path, spool: Path, *, attempts: int = ATTEMPTS, backoff: float = BACKOFF) -> bool:
    """Send one spooled event to its hooks with retries; True when every hook took it."""
    doc = json.loads(spool.read_text())
    hooks = {h.id: h for h in load_hooks(home)}
    body = json.dumps(
        {"event": doc["event"], "delivery": doc["delivery"], "created": doc["created"], "data": doc["data"]}
    ).encode()
    box = _box(home)
    ok = True
    for hook_id in doc["hooks"]:
        hook = hooks.get(hook_id)
        if hook is None:  # removed since
            continue
        signature = sign(box.decrypt(hook.secret), body)
        ok = _send(home, hook, doc, body, signature, attempts, backoff) and ok
    spool.unlink(missing_ok=True)
    return ok


def _send(
    home: Path, hook: Hook, doc: Mapping[str, Any], body: bytes, signature: str, attempts: int, backoff: float
) -> bool:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Aicd-Event": str(doc["event"]),
        "X-Aicd-Delivery": str(doc["delivery"]),
        "X-Hub-Signature-256": signature,
    }
    for attempt in range(1, attempts + 1):
        record: dict[str, Any] = {
            "hook": hook.id,
            "url": hook.url,
            "event": doc["event"],
            "delivery": doc["delivery"],
            "attempt": attempt,
        }
        started = time.monotonic()
        request = urllib.request.Request(hook.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(
                request, timeout=TIMEOUT
            ) as answer:  # the URL's scheme is checked: http or https
                record["status"] = answer.status
        except urllib.error.HTTPError as exc:
            record["status"] = exc.code
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            record["error"] = str(reason)[:200]
        record["ms"] = round((time.monotonic() - started) * 1000, 1)
        success = 200 <= int(record.get("status") or 0) < 300
        record["ok"] = success
        _log(home, record)
        if success:
            return True
        if attempt < attempts:
            time.sleep(backoff * 2 ** (attempt - 1))
    return False


def _log(home: Path, record: Mapping[str, Any]) -> None:
    folder = home / HOOKS_DIR
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(folder / LOG_FILE, "a") as handle:
            handle.write(json.dumps({"at": time.time(), **record}) + "\n")


def deliveries(home: Path, limit: int = 100) -> list[dict[str, Any]]:
    """The last ``limit`` delivery attempts, oldest first."""
    try:
        lines = (home / HOOKS_DIR / LOG_FILE).read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines[-limit:]:
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aicd.delivery.hooks")
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--spool", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        return 0 if deliver(args.home, args.spool) else 1
    except (ConfigError, OSError, ValueError, KeyError) as exc:
        _log(args.home, {"spool": str(args.spool), "error": f"not delivered: {exc}"})
        return 2


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["EVENTS", "Hook", "add_hook", "deliver", "deliveries", "emit", "load_hooks", "remove_hook", "sign"]
