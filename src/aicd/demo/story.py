"""`aicd demo`: the whole delivery loop of an AI service, from nothing, in one command.

In a new temporary folder (its own AICD_HOME, nothing configured): a Git repository made from
the example AI service; its pipeline run with `aicd run` (train, test, gate, register, deploy to
staging, then production, promote); generated traffic on production from then on, with labels
posted back for its answers; a second, better model that runs in shadow (a copy of the traffic,
answers compared with stable's), then canaries to production under that traffic, judged also on
live accuracy from the labels, and is promoted; a worse model that
the gate stops; a faulty service version that canary analysis catches and rolls back. Then the
pipelines, deployments, the incident and the reliability figures. Everything is stopped and the
folder deleted at the end (also on Ctrl-C or a failure) unless `keep` leaves it running.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import click

from aicd.demo.cleanup import end_processes, processes_under, stop_environments
from aicd.demo.load import TrafficCounts, TrafficLoad
from aicd.demo.pipeline import PipelineRun, run_pipeline
from aicd.demo.repo import DemoRepo
from aicd.demo.report import cli_output, gather, incidents_table, pipelines_table, show
from aicd.errors import AicdError, ConfigError

STEPS = 7
PRODUCTION = "production"
FAULT_RATE = "0.3"
LABELS = [0, 2]  # the true classes of the rows the generated traffic sends (load.ROWS)
Json = dict[str, Any]


@dataclass(frozen=True)
class DemoOptions:
    keep: bool = False  # leave the services running and the folder in place
    workers: int = 2  # traffic threads
    pause: float = 0.02  # seconds between a thread's requests
    fault_rate: str = FAULT_RATE  # the faulty version's share of failing /predict calls


FIRST_ANSWER_S = 30.0  # how long production's first answers to the demo's traffic may take


class Progress:
    """Numbered steps, indented detail lines, and how long each step took."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.number = 0
        self.started = time.monotonic()
        self.step_started = self.started
        self.phases: list[Json] = []

    def echo(self, text: str = "", **style: Any) -> None:
        click.echo(click.style(text, **style) if style else text, file=self.stream)

    def line(self, text: str) -> None:
        self.echo(f"    {text}")

    def step(self, title: str) -> None:
        self.number += 1
        self.step_started = time.monotonic()
        self.echo()
        self.echo(f"[{self.number}/{STEPS}] {title}", bold=True)

    def done(self, name: str, note: str = "") -> float:
        seconds = time.monotonic() - self.step_started
        self.phases.append({"step": self.number, "name": name, "seconds": round(seconds, 3)})
        self.echo(f"    {note + '; ' if note else ''}took {seconds:.1f}s", fg="green")
        return seconds


@dataclass
class DemoState:
    root: Path
    home: Path
    repo_path: Path
    logs: Path
    env: dict[str, str]
    runs: list[PipelineRun] = field(default_factory=list)
    load: TrafficLoad | None = None
    traffic: list[Json] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.home / 'aicd.db'}"


def check_requirements() -> None:
    missing = [n for n in ("sklearn", "flask", "joblib", "pytest") if importlib.util.find_spec(n) is None]
    if missing:
        raise ConfigError(
            f"aicd demo delivers the example AI service, which needs {', '.join(missing)} "
            f"(not importable by {sys.executable}): pip install 'aicd[examples]' "
            "(or `pip install -e '.[examples]'` in a clone)"
        )
    for tool in ("git", "bash"):
        if shutil.which(tool) is None:
            raise ConfigError(f"aicd demo needs {tool} on PATH")


def demo_env(root: Path, home: Path) -> dict[str, str]:
    """This environment without any aicd, CI or git setting; AICD_HOME and TMPDIR in the demo's
    folder; the interpreter running aicd first on PATH (jobs call `aicd` and `$PYTHON`, services
    `python`)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AICD_", "CI_", "GITLAB_", "GIT_", "IRIS_")) and k not in ("MODEL_PATH", "PORT")
    }
    bindir = Path(sys.executable).parent
    path = [str(bindir)]
    shims = {"aicd": "-m aicd.cli.main ", "python": ""}
    missing = {name: args for name, args in shims.items() if not (bindir / name).is_file()}
    if missing:  # e.g. aicd started as `python -m aicd.cli.main`, or no `python` beside python3
        shim_dir = root / "bin"
        shim_dir.mkdir()
        for name, args in missing.items():
            shim = shim_dir / name
            shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" {args}"$@"\n')
            shim.chmod(0o755)
        path.insert(0, str(shim_dir))
    env["PATH"] = os.pathsep.join([*path, env.get("PATH", "")])
    env["PYTHON"] = sys.executable
    env["AICD_HOME"] = str(home)
    env["AICD_DAEMON"] = "off"  # a job's `aicd run` leaves no run daemon behind the demo
    scratch = root / "tmp"  # what jobs and services put in temporary files stays in the folder too
    scratch.mkdir()
    env["TMPDIR"] = str(scratch)
    return env


def run_demo(options: DemoOptions, stream: TextIO) -> Json:
    """Run the demo; returns its summary (JSON). Raises AicdError when a step went wrong."""
    check_requirements()
    progress = Progress(stream)
    root = Path(tempfile.mkdtemp(prefix="aicd-demo-")).resolve()
    state = DemoState(root, root / "home", root / "iris-service", root / "logs", {})
    summary: Json = {"ok": False, "temp_dir": str(root), "kept": False}
    progress.echo(f"aicd demo: the delivery loop of an AI service, in {root}", bold=True)
    error: BaseException | None = None
    try:
        state.env = demo_env(root, state.home)
        _story(state, progress, options, summary)
        summary["ok"] = True
    except BaseException as exc:
        error = exc
        raise
    finally:
        summary["traffic"] = _stop_traffic(state)
        summary["phases"] = progress.phases
        summary["pipelines"] = [run.to_json() for run in state.runs]
        failed = error is not None and not isinstance(error, KeyboardInterrupt)
        if options.keep:
            summary["kept"] = True
            summary["ui"] = ui_command(state.home)
            _print_keep(state, progress, failed=failed)
        else:
            cleaning = time.monotonic()
            try:
                summary.update(_clean_up(state, progress, failed=failed))
                if isinstance(error, AicdError) and summary.get("logs_kept"):
                    # the message names a log in the deleted folder: name the kept copy instead
                    kept = str(Path(summary["logs_kept"]) / "pipelines")
                    error.args = tuple(str(a).replace(str(state.logs), kept) for a in error.args)
            except Exception as exc:  # never hide the demo's own error behind a clean-up one
                progress.line(f"clean-up failed: {type(exc).__name__}: {exc}; delete {root} by hand")
                summary["cleaned_up"] = False
            summary["phases"].append({"step": None, "name": "clean-up", "seconds": _since(cleaning)})
        summary["seconds"] = round(time.monotonic() - progress.started, 3)
        verdict = "finished" if error is None else "stopped"
        progress.echo()
        progress.echo(f"aicd demo {verdict} in {summary['seconds']:.1f}s", bold=True)
    return summary


def _since(start: float) -> float:
    return round(time.monotonic() - start, 3)


def _story(state: DemoState, progress: Progress, options: DemoOptions, summary: Json) -> None:
    progress.step("A Git repository from the example AI service (iris classifier, Flask service)")
    repo, first = DemoRepo.create(state.repo_path, state.env)
    progress.line(f"{state.repo_path}: commit {first.short} {first.title!r} on main")
    progress.done("repository")

    progress.step(
        "Pipeline of the first commit: build, test, train, evaluate, gate, register, deploy, promote"
    )
    _pipeline(state, progress, first.sha, first.title, "success", "first release in production")
    url = _production_url(state)
    progress.done("first release", f"production serves at {url}")

    progress.step(f"Generated traffic on production from now on ({options.workers} clients on {url}/predict)")
    state.load = TrafficLoad(url, workers=options.workers, pause=options.pause, labels=LABELS).start()
    # the first answers, however long a loaded machine takes to give them (not a fixed second)
    deadline = time.monotonic() + FIRST_ANSWER_S
    counts = state.load.counts()
    while counts.requests == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
        counts = state.load.counts()
    if counts.requests == 0 or counts.failures == counts.requests:
        raise AicdError(f"demo: production at {url} does not answer: {state.load.last_failure}")
    progress.done(
        "traffic",
        f"{counts.requests} requests in the first second, {counts.failures} failed; "
        "their true classes are posted to /_aicd/feedback as labels",
    )

    progress.step(
        "A better model (C = 5.0): shadow traffic, then a canary judged on errors, latency and "
        "live accuracy from labels; promoted"
    )
    better = repo.better_model()
    _pipeline(state, progress, better.sha, better.title, "success", "canary promoted")
    for line in _model_checks(state):
        progress.line(line)
    progress.done("better model", _deployed(state, "succeeded"))

    progress.step("A worse model (trained on one feature): the quality gate stops it")
    worse = repo.worse_model()
    run = _pipeline(state, progress, worse.sha, worse.title, "failed", "stopped at the gate")
    if run.jobs.get("gate") != "failed" or run.jobs.get("register") != "skipped":
        raise _unexpected(run, "the gate job to fail and register to be skipped")
    progress.done("worse model", "not registered, not deployed; production unchanged")

    progress.step(
        f"A faulty service (IRIS_FAULT_RATE {options.fault_rate}): canary analysis catches it, rolls back"
    )
    faulty = repo.faulty_service(options.fault_rate)
    run = _pipeline(state, progress, faulty.sha, faulty.title, "failed", "canary rolled back")
    if run.jobs.get("deploy-production") != "failed" or run.jobs.get("promote") != "skipped":
        raise _unexpected(run, "deploy-production to fail (canary rolled back) and promote to be skipped")
    progress.done("faulty service", _deployed(state, "rolled_back"))

    progress.step("What happened: pipelines, deployments, incidents, reliability")
    state.load.stop()  # the story is over: the counts below are final
    summary.update(gather(state.database_url))
    summary["url"] = url
    summary["repository"] = str(state.repo_path)
    _check_story(summary)
    _print_summary(state, progress, summary)
    progress.done("summary")


def _pipeline(
    state: DemoState, progress: Progress, sha: str, title: str, status: str, expected: str
) -> PipelineRun:
    log = state.logs / f"pipeline-{len(state.runs) + 1}.log"
    progress.line(f"commit {sha[:8]} {title!r}: aicd run (full output: {log})")
    before = state.load.counts() if state.load is not None else None
    run = run_pipeline(
        state.repo_path, state.env, log, progress.line, title=title, commit=sha, expected=expected
    )
    state.runs.append(run)
    note = f"pipeline #{run.pipeline_id} {run.status} in {run.seconds:.1f}s"
    if state.load is not None and before is not None:
        during = state.load.counts().since(before)
        state.traffic.append({"pipeline_id": run.pipeline_id, **during.to_json()})
        note += f"; traffic meanwhile: {during.requests} requests, {during.failures} failed"
    progress.line(note)
    if run.status != status:
        _raise_if_interrupted(run)
        raise _unexpected(run, f"it to end {status} ({expected})")
    return run


def _raise_if_interrupted(run: PipelineRun) -> None:
    """A pipeline the user canceled is the user's interrupt, never an unexpected result.

    Ctrl-C reaches the demo and its `aicd run` together; the run may end `canceled` before the
    demo's own KeyboardInterrupt is raised (under load, the signal can land in another thread and
    is handled only when the main thread runs again). The demo cancels no pipeline itself (its
    time limit raises its own error first), so a canceled one, or `aicd run` ending by SIGINT or
    SIGTERM (130, 143), means the user stopped the demo.
    """
    if run.exit_code == 143:
        raise Terminated
    if run.status == "canceled" or run.exit_code == 130:
        raise KeyboardInterrupt


def _unexpected(run: PipelineRun, wanted: str) -> AicdError:
    jobs = ", ".join(f"{name} {status}" for name, status in run.jobs.items())
    return AicdError(
        f"demo: pipeline #{run.pipeline_id} ({run.title}) ended {run.status}, but the demo expected "
        f"{wanted}; jobs: {jobs}; its log: {run.log}"
    )


def _production_url(state: DemoState) -> str:
    from aicd.store.deployments import open_deploy_store

    with open_deploy_store(state.database_url) as store:
        url = store.get_environment(PRODUCTION, scope="").url
    if not url:
        raise AicdError("demo: production has no address after its first deployment")
    return url


def _deployed(state: DemoState, wanted: str) -> str:
    """The newest production deployment, checked to have ended `wanted`."""
    from aicd.store.deployments import open_deploy_store

    with open_deploy_store(state.database_url) as store:
        [last] = store.list_deployments(environment=PRODUCTION, scope="", limit=1)
    if last.status != wanted:
        raise AicdError(
            f"demo: production deployment #{last.number} ({last.revision}) ended {last.status}, "
            f"expected {wanted}: {last.reason or 'no reason recorded'}"
        )
    what = f"production deployment #{last.number} ({last.revision}, {last.strategy}) {last.status}"
    return what + (f": {last.reason}" if last.reason else "")


def _model_checks(state: DemoState) -> list[str]:
    """What the newest production deployment's shadow phase and live accuracy check found."""
    from aicd.store.deployments import open_deploy_store

    with open_deploy_store(state.database_url) as store:
        [last] = store.list_deployments(environment=PRODUCTION, scope="", limit=1)
        events = store.list_events(environment=PRODUCTION, scope="", deployment_id=last.id)
    lines = [f"shadow phase: {e.message}" for e in events if e.kind == "shadow.result"]
    quality = (last.analysis or {}).get("quality") or {}
    if quality.get("reason"):
        lines.append(quality["reason"])
    return lines


def _check_story(summary: Json) -> None:
    production = [d["status"] for d in summary["deployments"].get(PRODUCTION, [])]
    if production != ["succeeded", "succeeded", "rolled_back"]:
        raise AicdError(
            f"demo: production deployments ended {production}, expected succeeded x2, rolled_back"
        )
    if not any(i["kind"] == "change_failure" for i in summary["incidents"]):
        raise AicdError("demo: the rolled-back canary left no change_failure incident")


def _print_summary(state: DemoState, progress: Progress, summary: Json) -> None:
    from concurrent.futures import ThreadPoolExecutor

    echo = progress.line
    commands = {
        "$ aicd env history staging": ["env", "history", "staging"],
        f"$ aicd env history {PRODUCTION}": ["env", "history", PRODUCTION],
        "$ aicd metrics": ["metrics"],
    }
    with ThreadPoolExecutor(len(commands)) as pool:  # three CLI start-ups at once
        outputs = {
            title: pool.submit(cli_output, args, state.repo_path, state.env)
            for title, args in commands.items()
        }
        show(echo, "Pipelines", pipelines_table(state.runs))
        show(echo, "$ aicd env history staging", outputs["$ aicd env history staging"].result())
        show(echo, f"$ aicd env history {PRODUCTION}", outputs[f"$ aicd env history {PRODUCTION}"].result())
        show(echo, "Incidents", incidents_table(summary["incidents"]))
        show(echo, "$ aicd metrics", outputs["$ aicd metrics"].result())
    counts = state.load.counts() if state.load is not None else TrafficCounts(0, 0, {})
    echo("")
    echo(f"Generated traffic on production: {counts.requests} requests, {counts.failures} failed")
    for during in state.traffic:
        echo(
            f"  during pipeline #{during['pipeline_id']}: {during['requests']} requests, "
            f"{during['failures']} failed"
        )
    url = summary["url"]
    echo(f"Production serves at {url}; try:")
    echo(
        f"  curl -s {url}/predict -H 'Content-Type: application/json' "
        "-d '{\"features\": [5.1, 3.5, 1.4, 0.2]}'"
    )


def _stop_traffic(state: DemoState) -> Json:
    """The traffic stops with the demo (with --keep too: the services stay, the load does not)."""
    if state.load is None:
        return TrafficCounts(0, 0, {}).to_json()
    counts = state.load.stop()
    return {**counts.to_json(), "per_pipeline": state.traffic}


def ui_command(home: Path) -> str:
    """The command that serves the demo's home in the browser (`aicd ui`, aicd.web.local)."""
    return f"aicd ui --home {shlex.quote(str(home))}"


def _print_keep(state: DemoState, progress: Progress, *, failed: bool) -> None:
    progress.echo()
    progress.echo("Left running (--keep)" + (" after the failure above" if failed else ""), bold=True)
    lines = [
        "The services keep running (the generated traffic has stopped). In a shell:",
        f"  cd {state.repo_path}",
        f"  export AICD_HOME={state.home}",
        "  aicd env list; aicd env status production; aicd runs; aicd metrics",
        "To see its pipelines, rollouts, models and figures in the browser (it prints the address to open):",
        f"  {ui_command(state.home)}",
        "To stop them and delete the demo:",
        f"  aicd env stop production; aicd env stop staging; cd; rm -rf {state.root}",
    ]
    for line in lines:
        progress.line(line)


def _clean_up(state: DemoState, progress: Progress, *, failed: bool) -> Json:
    progress.echo()
    progress.echo("Cleaning up: stopping the demo's environments and deleting its folder", bold=True)
    with _ignoring_interrupts():
        kept_logs = _save_logs(state) if failed else None
        stopped: list[str] = []
        with contextlib.suppress(AicdError, OSError):
            stopped = stop_environments(state.home, state.database_url, progress.line)
        ended = end_processes(state.root, progress.line)
        shutil.rmtree(state.root, ignore_errors=True)
    left = processes_under(state.root)
    removed = not state.root.exists()
    progress.line(
        f"stopped: {', '.join(stopped) or 'nothing was running'}; "
        f"{state.root} {'deleted' if removed else 'NOT deleted'}"
    )
    if kept_logs is not None:
        progress.line(f"the demo's logs are kept in {kept_logs}")
    return {
        "cleaned_up": removed and not left,
        "stopped_environments": stopped,
        "ended_processes": ended,
        "logs_kept": None if kept_logs is None else str(kept_logs),
    }


def _save_logs(state: DemoState) -> Path | None:
    """After a failure: the pipelines' and the environments' logs, copied out of the folder."""
    target = Path(tempfile.mkdtemp(prefix="aicd-demo-logs-"))
    with contextlib.suppress(OSError):
        if state.logs.is_dir():
            shutil.copytree(state.logs, target / "pipelines")
        for env_dir in (state.home / "environments").glob("*"):
            keep = shutil.ignore_patterns("releases", "*.sock")
            shutil.copytree(env_dir, target / "environments" / env_dir.name, ignore=keep)
    return target


@contextlib.contextmanager
def _ignoring_interrupts() -> Iterator[None]:
    """Ctrl-C (or SIGTERM) during the clean-up would leave half of it undone: ignored until the end."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is (the clean-up runs)."""


def terminate_on_sigterm() -> Callable[[], None]:
    """SIGTERM raises Terminated (so the clean-up runs); returns the undo."""

    def handler(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)

    def undo() -> None:
        signal.signal(signal.SIGTERM, previous)

    return undo
