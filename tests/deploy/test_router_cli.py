"""`python -m aicd.deploy.router`: serves until SIGINT, then prints what it counted; bad flags exit 2."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import httpx
import pytest
from router_servers import serve_in_thread

ROUTER = [sys.executable, "-m", "aicd.deploy.router"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_entry_point_routes_by_weight_and_reports_at_exit() -> None:
    with serve_in_thread("a") as a, serve_in_thread("b") as b:
        port = free_port()
        proc = subprocess.Popen(
            [
                *ROUTER,
                "--listen",
                f"127.0.0.1:{port}",
                "--backend",
                f"r1=127.0.0.1:{a.port}",
                "--backend",
                f"r2=127.0.0.1:{b.port}",
                "--weight",
                "r1=75",
                "--weight",
                "r2=25",
                "--count-field",
                "/predict:predictions",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stderr is not None
            first = proc.stderr.readline()
            assert "aicd router on" in first
            assert "(uvloop event loop)" in first  # uvloop is a dependency on Linux
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                answers = [client.post("/predict", params={"classes": "1,2"}) for _ in range(8)]
            backends = [r.headers["x-backend"] for r in answers]
            assert sorted(backends) == ["a"] * 6 + ["b"] * 2
        finally:
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0
        snap = json.loads(out)
        assert snap["weights"] == {"r1": 75, "r2": 25}
        assert snap["revisions"]["r1"]["requests"] == 6 and snap["revisions"]["r2"]["requests"] == 2
        assert snap["revisions"]["r1"]["field_values"] == {"1": 6, "2": 6}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "127.0.0.1", "--backend", "r1=127.0.0.1:9"], "'127.0.0.1': expected HOST:PORT"),
        (["--listen", "127.0.0.1:0", "--backend", "r1"], "--backend 'r1': expected REVISION=VALUE"),
        (["--listen", "127.0.0.1:0", "--backend", "r1=127.0.0.1:9", "--weight", "r1=60"], "must sum to 100"),
        (["--listen", "127.0.0.1:0", "--backend", "r1=127.0.0.1:9", "--count-field", "x"], "PATH:FIELD"),
    ],
)
def test_bad_flags_exit_2_with_one_clear_line(args: list[str], message: str) -> None:
    done = subprocess.run([*ROUTER, *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and message in done.stderr
    assert "Traceback" not in done.stderr


def test_event_loop_choice_from_the_environment() -> None:
    port = free_port()
    args = [*ROUTER, "--listen", f"127.0.0.1:{port}", "--backend", "r1=127.0.0.1:9"]
    bad = subprocess.run(
        args, capture_output=True, text=True, timeout=60, env={**os.environ, "AICD_EVENT_LOOP": "tokio"}
    )
    assert bad.returncode == 2
    assert "AICD_EVENT_LOOP='tokio': expected one of auto, uvloop, asyncio" in bad.stderr
    assert "Traceback" not in bad.stderr
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "AICD_EVENT_LOOP": "asyncio"},
    )
    try:
        assert proc.stderr is not None
        assert "(asyncio event loop)" in proc.stderr.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    assert proc.returncode == 0
