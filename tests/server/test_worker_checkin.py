"""`aicd worker` as a real process with its own home, against the real server: it checks in with
its runner token (online, version, host), keeps checking in, stops on SIGTERM; bad tokens and
servers get one clear message."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from serverproc import ServerProc, json_of

from aicd import __version__
from aicd_testing import AICD, aicd, clean_env


def _worker_env(home: Path) -> dict[str, str]:
    env = clean_env()
    env["HOME"] = str(home)  # nothing shared with the server through the file system
    env["AICD_HOME"] = str(home / ".aicd")
    return env


def test_a_worker_keeps_its_runner_online_and_stops_on_sigterm(
    server_sqlite: ServerProc, tmp_path: Path
) -> None:
    server = server_sqlite
    with server.client() as admin:
        runner = json_of(admin.post("/runners", json={"tags": ["gpu"], "description": "box"}))
        home = tmp_path / "worker"
        home.mkdir()
        env = _worker_env(home)
        env["AICD_RUNNER_TOKEN"] = runner["token"]
        proc = subprocess.Popen(
            [*AICD, "worker", "--server", server.url, "--check-in-interval", "0.3"],
            cwd=home,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            seen = json_of(admin.get(f"/runners/{runner['id']}"))
            while seen["status"] != "online" and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.2)
                seen = json_of(admin.get(f"/runners/{runner['id']}"))
            assert seen["status"] == "online", seen
            assert (seen["version"], seen["host"]) == (__version__, socket.gethostname())
            first = seen["contacted_at"]
            while seen["contacted_at"] == first and time.monotonic() < deadline:  # it checks in again
                time.sleep(0.2)
                seen = json_of(admin.get(f"/runners/{runner['id']}"))
            assert seen["contacted_at"] > first
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"runner {runner['id']} (gpu) online at {server.url}" in err and "worker stopped" in err
    assert runner["token"] not in out + err


def test_a_worker_with_a_bad_token_or_server_says_why(server_sqlite: ServerProc, tmp_path: Path) -> None:
    env = _worker_env(tmp_path)
    unknown = "aicdrt_" + "y" * 40
    cases = [
        (["--server", server_sqlite.url, "--token", unknown], "unknown runner token"),
        (["--server", server_sqlite.url, "--token", server_sqlite.admin_token], "not a runner token"),
        (["--server", server_sqlite.url], "no runner token"),
        (
            ["--server", "http://127.0.0.1:9", "--token", unknown],
            "cannot reach the aicd server at http://127.0.0.1:9",
        ),
        (["--token", unknown], "no aicd server given"),
    ]
    for args, message in cases:
        done = aicd(tmp_path, "worker", *args, env=env, timeout=60)
        assert done.returncode != 0, (args, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
        assert unknown not in done.stderr and server_sqlite.admin_token not in done.stderr
