"""One pipeline of the demo: the real `aicd run --json` in the demo's repository.

Every line the run prints goes to a log file; the terminal gets the condensed story: one line
per finished job, the deploy jobs' rollout events, the gate's verdict, the registered version.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aicd.errors import AicdError

# The plain `aicd run` output (aicd.cli.render): "JOB passed in 2.00 s", "JOB > output", ...
_FINISHED = re.compile(r"^(?P<job>\S+) (?P<what>(?:passed|failed|canceled|skipped)\b.*)$")
_EVENT = re.compile(r"^(?P<job>\S+) > (?:\d\d:\d\d:\d\d  )?(?P<text>.*)$")
# Job output worth a line: rollout events, the gate's verdict, the registry's answers. Not the
# `aicd deploy` result line (it repeats the last event), nor analysis measurements (every second).
_SHOWN = re.compile(
    r"^(deployment #\d+[: ].*|traffic: .*|r\d+ is healthy .*|r\d+ serves all traffic .*|all traffic on .*"
    r"|canary analysis .*|analysis .*|preview of .*|paused: .*|rolled back: .*|rollback to .*"
    r"|FAIL .*|gate (?:passed|FAILED|failed)\b.*|MODEL_VERSION=\d+|models:/\S+ -> .*)$"
)
_RESULT = re.compile(r"^deployment #\d+ \(r\d+, [\w-]+\) ")
Echo = Callable[[str], None]


@dataclass(frozen=True)
class PipelineRun:
    """What one `aicd run` did."""

    title: str
    commit: str
    expected: str  # what the demo expects of it, in words
    pipeline_id: int | None
    status: str
    jobs: dict[str, str]  # job -> status, in pipeline order
    job_seconds: dict[str, float | None]
    log: Path
    seconds: float
    exit_code: int
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "commit": self.commit,
            "expected": self.expected,
            "pipeline_id": self.pipeline_id,
            "status": self.status,
            "jobs": dict(self.jobs),
            "job_seconds": dict(self.job_seconds),
            "log": str(self.log),
            "seconds": round(self.seconds, 3),
        }


def condense(line: str) -> str | None:
    """The terminal line for one line of `aicd run` output, or None to keep it in the log only."""
    finished = _FINISHED.match(line)
    if finished:
        return f"{finished['job']:<18} {finished['what']}"
    event = _EVENT.match(line)
    if event:
        text = event["text"].strip()
        if _SHOWN.match(text) and not _RESULT.match(text):
            if text.startswith("MODEL_VERSION="):
                text = f"registered version {text.partition('=')[2]}"
            return f"{'':<18}   {text}"
    return None


def run_pipeline(
    repo: Path,
    env: Mapping[str, str],
    log: Path,
    echo: Echo,
    *,
    title: str,
    commit: str,
    expected: str,
    variables: Sequence[str] = (),
    timeout: float = 600.0,
) -> PipelineRun:
    """Run the pipeline of `repo`'s working tree with `aicd run --json`; condensed lines to `echo`."""
    argv = [sys.executable, "-m", "aicd.cli.main", "run", "--json"]
    for variable in variables:
        argv += ["--variable", variable]
    started = time.monotonic()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            argv,
            cwd=repo,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.append(_read(process.stdout)), daemon=True)
        reader.start()
        watchdog = threading.Timer(timeout, _stop, args=(process,))
        watchdog.daemon = True
        watchdog.start()
        try:
            assert process.stderr is not None
            for line in process.stderr:
                sink.write(line)
                sink.flush()
                shown = condense(line.rstrip("\n"))
                if shown is not None:
                    echo(shown)
            code = process.wait()
        except BaseException:
            _stop(process)
            raise
        finally:
            watchdog.cancel()
        reader.join(timeout=10)
    if time.monotonic() - started >= timeout:
        raise AicdError(f"demo: the pipeline ran longer than {timeout:g}s and was canceled; its log: {log}")
    if code in (130, 143) and not (out and out[0].strip()):
        raise KeyboardInterrupt  # stopped by the user's Ctrl-C (or SIGTERM) before it said anything
    result = _parse(out[0] if out else "", log)
    jobs = result.get("jobs") or []
    return PipelineRun(
        title=title,
        commit=commit,
        expected=expected,
        pipeline_id=(result.get("pipeline") or {}).get("id"),
        status=str((result.get("pipeline") or {}).get("status")),
        jobs={str(j["name"]): str(j["status"]) for j in jobs},
        job_seconds={str(j["name"]): j.get("duration_s") for j in jobs},
        log=log,
        seconds=time.monotonic() - started,
        exit_code=code,
        raw=result,
    )


def _read(stream: Any) -> str:
    return "" if stream is None else str(stream.read())


def _parse(stdout: str, log: Path) -> dict[str, Any]:
    try:
        data = json.loads(stdout)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("pipeline"), dict):
        raise AicdError(
            f"demo: `aicd run` gave no result (its output: {stdout.strip()[:300]!r}); its log: {log}"
        )
    return data


def _stop(process: subprocess.Popen[str]) -> None:
    """Cancel the run as Ctrl-C would (it stops its jobs), then make sure it is gone."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
