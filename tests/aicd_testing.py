"""Shared test helpers: real git repos in temp dirs, the real `aicd` process.

Imported by tests as `aicd_testing` (pytest `pythonpath = ["tests"]`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

AICD = [sys.executable, "-m", "aicd.cli.main"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(path, "init", "-q", "-b", "main")
    git(path, "-c", "user.email=t@example.com", "-c", "user.name=t", "add", "-A")
    git(path, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "initial commit")
    return path


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AICD_", "CI_", "GITLAB_"))}
    env["NO_COLOR"] = "1"
    env["AICD_DAEMON"] = "off"  # no run daemon outlives a test (tests/cli/test_run_daemon.py turns it on)
    return env


def aicd(
    cwd: Path, *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AICD, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or clean_env(),
        stdin=subprocess.DEVNULL,
    )


def run_json(cwd: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = aicd(cwd, "run", "--json", *args)
    assert proc.stdout.count("\n") == 1, f"stdout must be one JSON line:\n{proc.stdout}\n{proc.stderr}"
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def processes_with(token: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains ``token``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        state = stat[stat.rfind(")") + 2 :].split()[0]
        if token in cmdline and state not in ("Z", "X"):
            found.append(int(pid))
    return found
