"""`aicd run`: run the pipeline with live output, a final table, or JSON."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from aicd.cli.render import ConsoleObserver, print_diagnostics, print_summary
from aicd.core import aio
from aicd.core.local_run import RunRequest, RunResult, run_local
from aicd.errors import PipelineError, WorkflowFilteredOut
from aicd.pipeline.ir import Variable

# Exit codes: 0 success, 1 pipeline failed, 2 bad input (pipeline file, flags),
# 130 canceled by SIGINT, 143 by SIGTERM.
_SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _json_result(result: RunResult) -> dict[str, Any]:
    return {
        "pipeline": {"id": result.pipeline.id, "iid": result.pipeline.iid, "status": result.status},
        "jobs": [
            {
                "name": j.job.name,
                "stage": j.job.stage,
                "status": j.status,
                "allow_failure": j.allow_failure,
                "exit_code": j.outcome.exit_code if j.outcome else None,
                "duration_s": round(j.outcome.finished_at - j.outcome.started_at, 3) if j.outcome else None,
                "log_path": str(j.log_path),
                "attempts": j.attempt,
                "failure_reason": j.outcome.failure_reason if j.outcome else None,
                "tests": (
                    None
                    if j.outcome is None or j.outcome.tests is None
                    else {
                        "total": j.outcome.tests.total,
                        "passed": j.outcome.tests.passed,
                        "failed": j.outcome.tests.failed + j.outcome.tests.errors,
                        "skipped": j.outcome.tests.skipped,
                    }
                ),
            }
            for j in result.jobs
        ],
    }


async def _run(req: RunRequest, observer: ConsoleObserver) -> tuple[RunResult, int | None]:
    cancel = asyncio.Event()
    got: list[int] = []
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if not got:
            observer.info(f"{sig.name}: canceling the pipeline (jobs are being stopped)...")
        got.append(_SIGNAL_EXIT[sig])
        cancel.set()

    for sig in _SIGNAL_EXIT:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        result = await run_local(req, observer, cancel=cancel)
    finally:
        observer.flush()
        for sig in _SIGNAL_EXIT:
            loop.remove_signal_handler(sig)
    return result, (got[0] if got else None)


def run_command(
    *,
    project_dir: Path,
    file: str,
    jobs: tuple[str, ...],
    with_needs: bool,
    manual: tuple[str, ...],
    variables: tuple[Variable, ...],
    commit: str | None,
    concurrency: int | None,
    as_json: bool,
    isolate: bool = False,
    untracked: bool = False,
) -> int:
    observer = ConsoleObserver(plain=as_json or not sys.stderr.isatty(), to_stderr=as_json)
    req = RunRequest(
        project_dir=project_dir,
        file=file,
        jobs=jobs,
        with_needs=with_needs,
        manual=manual,
        variables=variables,
        commit=commit,
        concurrency=concurrency,
        isolate=isolate,
        untracked=untracked,
    )
    try:
        result, signal_code = aio.run(_run(req, observer))
    except WorkflowFilteredOut as exc:
        if as_json:
            print(
                json.dumps({"pipeline": {"id": None, "status": "skipped"}, "jobs": [], "message": str(exc)})
            )
        else:
            observer.info(str(exc))
        return 0
    except PipelineError as exc:
        print_diagnostics(exc.diagnostics)
        if as_json:
            errors = [str(d) for d in exc.diagnostics]
            print(json.dumps({"pipeline": {"id": None, "status": "failed"}, "jobs": [], "errors": errors}))
        return exc.exit_code
    if as_json:
        sys.stdout.write(json.dumps(_json_result(result)) + "\n")
    else:
        print_summary(result)
    if signal_code is not None:
        return signal_code
    return 0 if result.status == "success" else 1
