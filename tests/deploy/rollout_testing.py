"""Helpers for rollout tests: releases of the real iris service, the real `aicd` CLI, a load generator."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from aicd_testing import AICD, clean_env

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "iris-service"
ROW = {"features": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.8, 2.2]]}
IGNORE = shutil.ignore_patterns(".aicd", "__pycache__", ".pytest_cache", "model", "tests")


def trained_model(folder: Path) -> Path:
    """Train the iris model once into `folder`/model (a few seconds)."""
    model = folder / "model"
    if not (model / "model.joblib").exists():
        subprocess.run(
            [sys.executable, "train.py", "--out", str(model)], cwd=EXAMPLE, check=True, capture_output=True
        )
    return model


def make_release(
    root: Path,
    name: str,
    model: Path,
    *,
    service_env: dict[str, str] | None = None,
    environments: Any = None,
    analysis: Any = None,
    service: dict[str, Any] | None = None,
) -> Path:
    """A release folder of the iris service with its own aicd.yml."""
    release = root / name
    shutil.copytree(EXAMPLE, release, ignore=IGNORE)
    shutil.copytree(model, release / "model")
    spec: dict[str, Any] = {
        "command": [sys.executable, "app.py"],
        "port_variable": "PORT",
        "health_path": "/healthz",
        "readiness_timeout": "30s",
        "instances": 1,
        "liveness_interval": "500ms",
        "liveness_failures": 3,
        "stop_grace": "5s",
        "env": {"IRIS_RELEASE": name, **(service_env or {})},
    }
    spec.update(service or {})
    config: dict[str, Any] = {"service": spec}
    if environments is not None:
        config["environments"] = environments
    if analysis is not None:
        config["analysis"] = analysis
    (release / "aicd.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return release


def cli(home: Path, cwd: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**clean_env(), "AICD_HOME": str(home)}
    return subprocess.run([*AICD, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def cli_json(home: Path, cwd: Path, *args: str) -> Any:
    done = cli(home, cwd, *args, "--json")
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout)


@dataclass
class Load:
    """Steady POST /predict traffic from `workers` threads with keep-alive connections."""

    url: str
    workers: int = 4
    pause: float = 0.002
    statuses: Counter[int] = field(default_factory=Counter)
    # (when the request was sent, what) of every failed request; (when sent, status) of every request
    failures: list[tuple[float, str]] = field(default_factory=list)
    answered: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        for _ in range(self.workers):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while not self._stop.is_set():
                sent = time.time()
                try:
                    response = client.post("/predict", json=ROW)
                    status, what = response.status_code, response.text[:200]
                except httpx.HTTPError as exc:
                    status, what = 0, f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self.statuses[status] += 1
                    self.answered.append((sent, status))
                    if status != 200:
                        self.failures.append((sent, f"{status} {what}"))
                time.sleep(self.pause)

    def stop(self) -> Load:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
        return self

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    def failed_after(self, moment: float) -> int:
        """Failed requests among those sent after `moment`."""
        return sum(1 for at, _ in self.failures if at > moment)

    def count_after(self, moment: float) -> int:
        return sum(1 for at, _ in self.answered if at > moment)
