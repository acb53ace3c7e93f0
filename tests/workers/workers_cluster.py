"""What the worker tests share: the real server with a broker, `aicd worker` processes with their
own homes, RabbitMQ queue checks (a uniquely named module: `conftest` is ambiguous across folders).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))

from serverproc import ServerProc, json_of

from aicd_testing import AICD, clean_env

BROKER_URL = os.environ.get("AICD_TEST_BROKER_URL") or "amqp://guest:guest@127.0.0.1:5672//"
LEASE_S = 6.0


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
