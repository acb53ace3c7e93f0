#!/usr/bin/env python3
"""Benchmark: the server's share of a remote job's queue-to-start, without the worker.

Runs, in this process, the server's own code on the way of a job attempt to a worker, on a real
PostgreSQL and a real RabbitMQ: the run's recorder told the attempt starts (`ServerRecorder`),
its job token (`JobTokenExecutor`, as the dispatcher builds it), the remote executor
(`CeleryExecutor`: the row `pending`, the broker publish), then the claim as the claim route
runs it (`aicd.core.remote_jobs.claim`, the runner's token checked, the lease committed). Per
attempt: the time from the recorder's call to the publish done (`to_broker`), the claim's time
(`claim`), the database commits on that way (counted with a SQLAlchemy event), and the CPU of this
process per attempt. Nothing is mocked; the message is left in a queue of its own, deleted after.

A/B at the same load: run it against two source trees, one after the other, several rounds:

    python benchmarks/remote_dispatch.py --attempts 200 --rounds 3 --base /tmp/base/src

(`--base`: a checkout's `src` of the code to compare with, run as a subprocess with PYTHONPATH;
without it, only this tree). PostgreSQL: AICD_BENCH_PG (default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres); RabbitMQ: AICD_BENCH_BROKER.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

PG_ADMIN = os.environ.get("AICD_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BROKER = os.environ.get("AICD_BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672//")


async def one_tree(attempts: int) -> dict[str, float]:
    import sqlalchemy
    from sqlalchemy import event, select

    from aicd.core import remote_jobs
    from aicd.core import runners as runner_rules
    from aicd.core.job_tokens import JobTokenExecutor
    from aicd.core.server_recorder import ServerRecorder
    from aicd.engine import JobStatus
    from aicd.executors.base import JobRequest
    from aicd.executors.celery_exec import BrokerSender, CeleryExecutor, RemoteJobs, RemoteSettings
    from aicd.pipeline.ir import Job, Variable
    from aicd.store.job_leases import JobLeaseStore
    from aicd.store.job_tokens import JobTokenStore
    from aicd.store.owned import open_current
    from aicd.store.records import NewJob
    from aicd.store.repository import RunStore
    from aicd.store.runners import RunnerStore
    from aicd.store.schema import pipelines

    name = f"aicd_bench_rd_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    database = open_current(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}")
    prefix = f"aicd.bench.{uuid.uuid4().hex[:8]}"
    sender = BrokerSender(BROKER)
    try:
        runs = RunStore(database)
        run_root = Path(tempfile.mkdtemp(prefix="aicd-bench-rd-"))
        record = runs.create_pipeline(
            project_dir="server:bench",
            ref="main",
            sha="a" * 40,
            source="push",
            file="ci.yml",
            run_dir_root=str(run_root),
        )
        with database.read("project") as conn:
            project_id = conn.execute(
                select(pipelines.c.project_id).where(pipelines.c.id == record.id)
            ).scalar_one()
        runner_store = RunnerStore(database)
        _runner, token = runner_rules.register(
            runner_store, tags="", run_untagged=True, description="bench", actor="bench"
        )
        queued: set[int] = set()
        book_args: dict[str, Any] = {}
        if "pending_rows" in inspect.signature(remote_jobs.StoreBook).parameters:
            book_args["pending_rows"] = queued
        book = remote_jobs.StoreBook(runs, JobLeaseStore(database), runner_store, **book_args)
        hub = RemoteJobs(sender.send, book, RemoteSettings(queue_prefix=prefix))
        rec_args: dict[str, Any] = {}
        if "remote" in inspect.signature(ServerRecorder).parameters:
            rec_args["remote"] = True
        recorder = ServerRecorder(runs, record, **rec_args)
        tok_args: dict[str, Any] = {}
        if "queued" in inspect.signature(JobTokenExecutor).parameters:
            tok_args["queued"] = queued
        tokens = JobTokenExecutor(
            CeleryExecutor(hub), JobTokenStore(database), project_id=project_id, **tok_args
        )
        job = Job(name="j", base_name="j", stage="test", script=("true",))
        ids = runs.add_jobs(
            record.id, [NewJob("j", "test", "on_success", False, "created") for _ in range(attempts)]
        )

        commits = 0

        def count(_conn: Any) -> None:
            nonlocal commits
            commits += 1

        event.listen(database.engine, "commit", count)
        sender.send(0, hub.queue_for(()))  # the broker's connection made before timing
        to_broker: list[float] = []
        claims: list[float] = []
        cpu0 = time.process_time()
        for job_id in ids:
            t0 = time.perf_counter()
            recorder.job_status(job, job_id, 1, JobStatus.RUNNING, None)
            request = JobRequest(
                job, job_id, 1, record.id, Path(record.run_dir), (Variable("CI_COMMIT_SHA", "a" * 40),)
            )
            await tokens.start(request, lambda _k, _t: None)
            t1 = time.perf_counter()
            answer = remote_jobs.claim(hub, runner_store, token, job_id)
            if inspect.isawaitable(answer):
                await answer
            t2 = time.perf_counter()
            to_broker.append((t1 - t0) * 1000)
            claims.append((t2 - t1) * 1000)
        cpu = time.process_time() - cpu0
        event.remove(database.engine, "commit", count)
        return {
            "to_broker_p50": statistics.median(to_broker),
            "claim_p50": statistics.median(claims),
            "commits_per_attempt": commits / attempts,
            "cpu_ms_per_attempt": cpu * 1000 / attempts,
        }
    finally:
        sender.close()
        try:
            from kombu import Connection

            with Connection(BROKER) as conn:
                conn.channel().queue_delete(f"{prefix}.untagged")
        except Exception:
            pass
        database.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def run_child(src: str | None, attempts: int) -> dict[str, float]:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--attempts", str(attempts)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--attempts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base", help="the `src` folder of the code to compare with")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(one_tree(args.attempts))))
        return
    trees = [("this tree", None)] + ([("base", args.base)] if args.base else [])
    print(f"# The server's share of queue-to-start ({args.attempts} attempts, {args.rounds} rounds)\n")
    print(
        "| round | code | load (1 min) | to_broker p50 ms | claim p50 ms | commits per attempt "
        "| CPU ms per attempt |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in range(1, args.rounds + 1):
        for label, src in reversed(trees) if r % 2 else trees:
            load = os.getloadavg()[0]
            f = run_child(src, args.attempts)
            print(
                f"| {r} | {label} | {load:.1f} | {f['to_broker_p50']:.2f} | {f['claim_p50']:.2f} | "
                f"{f['commits_per_attempt']:.1f} | {f['cpu_ms_per_attempt']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
