"""What the worker tests share: the real server with a broker, `aicd worker` processes with their
own homes, RabbitMQ queue checks, the broker's restart and the lock that keeps it from the other
tests (a uniquely named module: `conftest` is ambiguous across folders).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))

from serverproc import ServerProc, json_of

from aicd_testing import AICD, clean_env

BROKER_URL = os.environ.get("AICD_TEST_BROKER_URL") or "amqp://guest:guest@127.0.0.1:5672//"
LEASE_S = 6.0
# Tests using RabbitMQ hold it shared; a test that restarts it holds it alone (across pytest-xdist
# workers and pytest sessions on this machine).
BROKER_LOCK = Path(tempfile.gettempdir()) / "aicd-tests-rabbitmq.lock"
LOCK_WAIT_S = 1200.0


def broker_reachable() -> None:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=5):
            return
    except OSError as exc:
        pytest.fail(
            f"RabbitMQ at 127.0.0.1:5672 not reachable ({exc}); start it (rabbitmq-server) or set "
            "AICD_TEST_BROKER_URL",
            pytrace=False,
        )


@contextlib.contextmanager
def broker_lock(*, alone: bool) -> Iterator[None]:
    """Hold the broker with the other tests (shared), or alone (a test that restarts it).

    A gate in front of the lock keeps a test waiting to be alone from being starved by a stream of
    shared holders: it holds the gate while it waits, so no new shared holder comes in.
    """
    with open(BROKER_LOCK, "a+") as lock, open(f"{BROKER_LOCK}.gate", "a+") as gate:
        deadline = time.monotonic() + LOCK_WAIT_S
        _flock(gate, fcntl.LOCK_EX, deadline)
        try:
            _flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH, deadline)
        finally:
            if not alone:
                fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            fcntl.flock(gate, fcntl.LOCK_UN)


def _flock(handle: Any, mode: int, deadline: float) -> None:
    while True:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                pytest.fail(f"the RabbitMQ test lock {BROKER_LOCK} was held for {LOCK_WAIT_S:.0f} s")
            time.sleep(0.1)


def restart_broker(down_s: float = 2.0) -> float:
    """Restart RabbitMQ's application on this machine (`rabbitmqctl stop_app`, `start_app`): every
    connection is dropped, what the broker keeps on disk (durable queues, persistent messages)
    survives. The broker is started again whatever happens; returns how long it was down (s).

    (A restart of the whole service is not possible here: the init script cannot stop the node,
    which was not started by it; stop_app/start_app stops and starts the broker inside the node.)
    """
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.fail("rabbitmqctl not found: the broker restart test needs it (and root)", pytrace=False)
    stopped = time.monotonic()
    try:
        subprocess.run([ctl, "stop_app"], check=True, capture_output=True, timeout=600)
        time.sleep(down_s)
    finally:
        subprocess.run([ctl, "start_app"], check=True, capture_output=True, timeout=600)
        deadline = time.monotonic() + 60
        while queue_depth("aicd.tests.probe") is None:
            assert time.monotonic() < deadline, "RabbitMQ takes no connection after start_app"
            time.sleep(0.1)
    return time.monotonic() - stopped


def queue_depth(name: str) -> int | None:
    """How many ready messages queue `name` holds (0 if it does not exist); None: broker unreachable."""
    from kombu import Connection

    try:
        with Connection(BROKER_URL, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
            try:
                _queue, count, _consumers = conn.channel().queue_declare(name, passive=True)
            except Exception:
                return 0 if conn.connected else None
            return int(count)
    except Exception:
        return None


def purge_queue(name: str) -> int:
    """Drop every ready message of queue `name` (as a broker that lost them); how many it held."""
    from kombu import Connection

    with Connection(BROKER_URL) as conn:
        return int(conn.channel().queue_purge(name) or 0)


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    home: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # Celery's cold shutdown: no waiting for jobs
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill9()


@dataclass
class Cluster:
    server: ServerProc
    prefix: str
    tmp: Path
    workers: list[Worker] = field(default_factory=list)
    queues: set[str] = field(default_factory=set)

    def register(
        self, tags: list[str] | None = None, *, untagged: bool = False, description: str = ""
    ) -> dict[str, Any]:
        with self.server.client() as admin:
            runner: dict[str, Any] = json_of(
                admin.post(
                    "/runners",
                    json={"tags": tags or [], "run_untagged": untagged, "description": description},
                )
            )
        return runner

    def worker(self, runner: dict[str, Any], *, concurrency: int = 1, name: str | None = None) -> Worker:
        """Start `aicd worker` for `runner` and wait until it consumes its queues."""
        name = name or f"w{len(self.workers)}"
        home = self.tmp / f"worker-{name}"
        home.mkdir(parents=True)
        env = clean_env()
        env["HOME"] = str(home)
        env["AICD_HOME"] = str(home / ".aicd")
        env["AICD_RUNNER_TOKEN"] = runner["token"]
        env["AICD_BROKER_URL"] = BROKER_URL
        log_path = self.tmp / f"worker-{name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [
                    *AICD,
                    "worker",
                    "--server",
                    self.server.url,
                    "--concurrency",
                    str(concurrency),
                    "--check-in-interval",
                    "1",
                ],
                cwd=home,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(proc, home, log_path)
        self.workers.append(worker)
        deadline = time.monotonic() + 60
        while "taking jobs from the broker" not in worker.log():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker {name} did not start:\n{worker.log()}")
            time.sleep(0.1)
        with self.server.client() as admin:
            seen = json_of(admin.post("/runners/verify", headers={"RUNNER-TOKEN": runner["token"]}))
        self.queues.update(seen["queues"])
        _wait_consumers(seen["queues"])
        return worker

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        _delete_queues(self.queues | {f"{self.prefix}.untagged"})


def _wait_consumers(queues: list[str], timeout: float = 60) -> None:
    """Until every queue exists and has a consumer (the worker is ready to take messages)."""
    from kombu import Connection

    deadline = time.monotonic() + timeout
    with Connection(BROKER_URL) as conn:
        channel = conn.channel()
        for name in queues:
            while True:
                try:
                    _queue, _count, consumers = channel.queue_declare(name, passive=True)
                except Exception:
                    channel = conn.channel()
                    consumers = 0
                if consumers:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"no consumer on queue {name} after {timeout} s")
                time.sleep(0.1)


def _delete_queues(names: set[str]) -> None:
    from kombu import Connection

    with contextlib.suppress(Exception), Connection(BROKER_URL) as conn:
        for name in names:
            with contextlib.suppress(Exception):
                conn.channel().queue_delete(name)
