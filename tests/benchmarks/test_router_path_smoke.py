"""benchmarks/router_path.py drives the router's objects with in-memory transports: the bytes it
relays are checked here, so the instruction counts it reports are of a router that works."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from aicd_testing import clean_env

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "router_path.py"
# loaded from its file: benchmarks/ on sys.path would shadow the tests' own `server` package
# (benchmarks/server.py) in every test module this process imports after this one
_SPEC = importlib.util.spec_from_file_location("aicd_bench_router_path", SCRIPT)
assert _SPEC is not None and _SPEC.loader is not None
router_path = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = router_path
_SPEC.loader.exec_module(router_path)


def test_the_path_benchmark_relays_each_request_and_answer_whole() -> None:
    sent, answered = router_path.drive(3)
    assert len(sent) == len(answered) == 3
    for n, (head, answer) in enumerate(zip(sent, answered, strict=True), 1):
        assert head.startswith(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\n")
        assert b"X-Forwarded-For: 127.0.0.1\r\n" in head and head.endswith(b"\r\n\r\n")
        request_id = head.split(b"X-Request-Id: ")[1].split(b"\r\n")[0]
        assert request_id.endswith(b"-%x" % n)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"X-Request-Id: " + request_id + b"\r\n" in answer
        assert answer.endswith(b"\r\n\r\n" + router_path.BODY)
    sent, answered = router_path.drive(2, request_ids=False)
    assert all(b"X-Request-Id" not in data for data in sent + answered)


def test_the_path_benchmark_runs_as_a_command() -> None:
    command = [sys.executable, str(SCRIPT), "--drive", "500"]
    done = subprocess.run(command, capture_output=True, text=True, env=clean_env(), timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
