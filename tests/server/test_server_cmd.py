"""`aicd server` itself: start-up errors are one clear message; SIGTERM stops it cleanly."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
from serverproc import API, ServerProc

from aicd_testing import AICD, clean_env


def _server(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [*AICD, "server", "--host", "127.0.0.1", "--home", str(tmp_path / "home"), *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, env={**clean_env(), **(env or {})}
    )


def test_port_in_use_is_one_clear_error(server_sqlite: ServerProc, tmp_path: Path) -> None:
    second = _server(tmp_path, "--port", str(server_sqlite.port))
    assert second.returncode == 2
    assert second.stderr.strip() == (
        f"aicd: cannot listen on 127.0.0.1:{server_sqlite.port}: the port is in use "
        "(another aicd server?); pick another --port"
    )
    assert httpx.get(f"{server_sqlite.url}{API}/health").status_code == 200  # the first one is unharmed


def test_unreachable_database_is_one_clear_error(tmp_path: Path) -> None:
    started = time.monotonic()
    result = _server(tmp_path, "--port", "0", "--database-url", "postgresql://postgres@127.0.0.1:1/nothing")
    assert result.returncode != 0
    assert result.stderr.startswith(
        "cannot open database at postgresql+psycopg://postgres@127.0.0.1:1/nothing"
    )
    assert "Traceback" not in result.stderr and "listening" not in result.stderr
    assert time.monotonic() - started < 30


def test_bad_secret_key_is_one_clear_error(tmp_path: Path) -> None:
    result = _server(tmp_path, "--port", "0", env={"AICD_SECRET_KEY": "not-a-key"})
    assert result.returncode == 2
    assert result.stderr.startswith("aicd: AICD_SECRET_KEY: not a valid secret key")
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_defaults_to_sqlite_in_home_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc = ServerProc(tmp_path / "home", "", poll=False).start()
    try:
        assert (tmp_path / "home" / "aicd.db").exists()
        assert (tmp_path / "home" / "secret.key").exists()
        with proc.client() as admin:
            assert admin.post("/users", json={"name": "kept"}).status_code == 201
        started = time.monotonic()
        # uvicorn shuts down gracefully, then re-raises the signal: the exit status says SIGTERM.
        assert proc.stop(timeout=15) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 10
        assert "Traceback" not in proc.log()
        proc.start()  # same home, same database, same port
        with proc.client() as admin:
            assert [u["name"] for u in admin.get("/users").json()] == ["admin", "kept"]
    finally:
        proc.stop(check=False)
