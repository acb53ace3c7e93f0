#!/usr/bin/env python3
"""Benchmark: jobs through Celery workers (RabbitMQ) against the server's in-process executor.

Each configuration is a fresh `aicd server` on PostgreSQL (its own home, database and queue
prefix) started as a subprocess on 127.0.0.1:

  in-process     no broker: the server runs every job itself (sandboxed), as without workers;
  N workers      AICD_BROKER_URL set; N `aicd worker` processes (each its own home, concurrency 1,
                 sandboxed) take the jobs from RabbitMQ and run them through the server's API.

Three measurements per configuration, in the same run:

  flat        one pipeline of --jobs short jobs (`echo`) in one stage; wall time from the
              trigger to the pipeline's end -> throughput (jobs/s). The server's CPU time
              (user + system, from /proc) over that run, divided by the jobs -> CPU per job.
  dag         one pipeline of --dag jobs in layers of 10, each job `needs` two of the layer
              before; wall time -> jobs/s.
  latency     --latency single-job pipelines, one after the other; for each, the job's
              `started_at` minus its `created_at` (the engine made the job; it needs nothing,
              so it is ready then), both on the server's clock -> queue-to-start latency p50
              and p99 (the issue's target: p50 under 50 ms). `started_at`: the local executor
              began the attempt; or the server got the first heartbeat of the worker, which
              sends it once its executor began the attempt (after the claim, the source and
              the artifacts). With AICD_WORKER_TIMINGS=1 (set here) each worker logs where an
              attempt's time went; the medians are printed per phase.

The CPU per job is user + system time from /proc over the flat pipeline: of the server alone,
and of all aicd processes (the server and the workers, with the job processes they waited for;
PostgreSQL and RabbitMQ are not counted). A full run (the defaults) takes a few minutes.

Every pipeline must end `success` (checked; a run that does not is reported as failed).

    python benchmarks/workers.py                         # 500 flat, 200 dag, 1/2/4 workers
    python benchmarks/workers.py --jobs 100 --dag 40 --latency 20
    python benchmarks/workers.py --output benchmarks/results/workers.md

RabbitMQ: AICD_BENCH_BROKER (default amqp://guest:guest@127.0.0.1:5672//). PostgreSQL:
AICD_BENCH_PG (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

API = "/api/v1"
PG_ADMIN = os.environ.get("AICD_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BROKER = os.environ.get("AICD_BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
TARGET_P50_MS = 50.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def sh(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def flat_ci(jobs: int) -> str:
    lines = ["stages: [run]"]
    for i in range(jobs):
        lines += [f"j{i}:", "  stage: run", f"  script: [echo job {i}]"]
    return "\n".join(lines) + "\n"


def dag_ci(jobs: int) -> str:
    lines = []
    width = 10
    for i in range(jobs):
        layer, pos = divmod(i, width)
        lines += [f"d{i}:", f"  script: [echo dag {i}]"]
        if layer:
            base = (layer - 1) * width
            lines.append(f"  needs: [d{base + pos}, d{base + (pos + 1) % width}]")
        else:
            lines.append("  needs: []")
    return "\n".join(lines) + "\n"


def one_ci() -> str:
    return "one:\n  script: [echo one]\n"


def make_repo(root: Path, files: dict[str, str]) -> Path:
    repo = root / "repo"
    repo.mkdir()
    sh("git", "-C", str(repo), "init", "-q", "-b", "main")
    for name, text in files.items():
        (repo / name).write_text(text)
    sh("git", "-C", str(repo), "add", "-A")
    sh(
        "git",
        "-C",
        str(repo),
        "-c",
        "user.email=b@example.com",
        "-c",
        "user.name=b",
        "commit",
        "-q",
        "-m",
        "x",
    )
    return repo


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AICD_", "CI_", "GITLAB_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cpu_s(self, children: bool = False) -> float:
        """User + system CPU seconds of the process (and of its children it waited for: the jobs)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        own = int(fields[11]) + int(fields[12])
        return (own + (int(fields[13]) + int(fields[14]) if children else 0)) / CLK_TCK


@contextmanager
def pg_database() -> Iterator[str]:
    import sqlalchemy

    name = f"aicd_bench_w_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


class Cluster:
    def __init__(self, root: Path, workers: int, concurrency: int) -> None:
        self.root = root
        self.n_workers = workers
        self.concurrency = concurrency
        self.prefix = f"bench{uuid.uuid4().hex[:8]}.jobs"
        self.server: Proc | None = None
        self.workers: list[Proc] = []
        self.url = ""
        self.token = ""

    def start(self, database_url: str) -> None:
        env = clean_env()
        env["AICD_DATABASE_URL"] = database_url
        env["AICD_CONCURRENCY"] = str(self.concurrency)
        if self.n_workers:
            env["AICD_BROKER_URL"] = BROKER
            env["AICD_QUEUE_PREFIX"] = self.prefix
        home = self.root / "home"
        command = [sys.executable, "-m", "aicd.cli.main", "server", "--host", "127.0.0.1", "--port", "0"]
        command += ["--home", str(home), "--no-poll", "--allowed-repo-root", str(self.root)]
        log_path = self.root / "server.log"
        with open(log_path, "ab") as log:
            self.server = Proc(
                subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), log_path
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.server.proc.poll() is not None:
                raise SystemExit(f"aicd server exited:\n{self.server.log()}")
            found = re.search(r"aicd server listening on (http://\S+)", self.server.log())
            if found:
                self.url = found.group(1)
                try:
                    if httpx.get(f"{self.url}{API}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        else:
            raise SystemExit(f"aicd server not ready:\n{self.server.log()}")
        self.token = (home / "admin-token").read_text().strip()
        with self.client() as admin:
            for i in range(self.n_workers):
                runner = admin.post("/runners", json={"run_untagged": True, "description": f"bench {i}"})
                runner.raise_for_status()
                self._worker(i, runner.json()["token"])
        for worker in self.workers:
            deadline = time.monotonic() + 90
            while "taking jobs from the broker" not in worker.log():
                if worker.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"aicd worker did not start:\n{worker.log()}")
                time.sleep(0.1)
        time.sleep(2)  # the Celery consumers attach to their queues

    def _worker(self, i: int, token: str) -> None:
        home = self.root / f"worker-{i}"
        home.mkdir()
        env = clean_env()
        env.update(
            HOME=str(home),
            AICD_HOME=str(home / ".aicd"),
            AICD_RUNNER_TOKEN=token,
            AICD_BROKER_URL=BROKER,
            AICD_WORKER_TIMINGS="1",
        )
        log_path = self.root / f"worker-{i}.log"
        command = [
            sys.executable,
            "-m",
            "aicd.cli.main",
            "worker",
            "--server",
            self.url,
            "--concurrency",
            "1",
        ]
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=home)
        self.workers.append(Proc(proc, log_path))

    def all_cpu_s(self) -> float:
        """CPU seconds of the server and the workers, with the jobs they ran."""
        procs = ([self.server] if self.server is not None else []) + self.workers
        return sum(p.cpu_s(children=True) for p in procs)

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}{API}", headers={"Authorization": f"Bearer {self.token}"}, timeout=120
        )

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop(signal.SIGQUIT)
        if self.server is not None:
            self.server.stop()
        if self.n_workers:
            delete_queues(self.prefix)


def delete_queues(prefix: str) -> None:
    try:
        from kombu import Connection

        with Connection(BROKER) as conn:
            conn.channel().queue_delete(f"{prefix}.untagged")
    except Exception:
        pass


def add_project(client: httpx.Client, name: str, repo: Path) -> None:
    body = {"name": name, "repo_url": str(repo), "default_branch": "main", "poll_interval_s": None}
    client.post("/projects", json=body).raise_for_status()


def run_pipeline(client: httpx.Client, project: str, timeout: float = 1800) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    answer = client.post(f"/projects/{project}/pipelines", json={"ref": "main"})
    answer.raise_for_status()
    pipeline_id = answer.json()["id"]
    deadline = started + timeout
    while time.monotonic() < deadline:
        record: dict[str, Any] = client.get(f"/projects/{project}/pipelines/{pipeline_id}").json()
        if record["status"] in ("success", "failed", "canceled", "skipped"):
            return record, time.monotonic() - started
        time.sleep(0.05)
    raise SystemExit(f"pipeline {pipeline_id} of {project} did not finish in {timeout} s")


@dataclass
class Figures:
    label: str
    flat_s: float = 0.0
    flat_cpu_ms: float = 0.0
    all_cpu_ms: float = 0.0  # server + workers, with the job processes they ran
    dag_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    ok: bool = True
    note: str = ""
    phases: dict[str, float] | None = None  # worker-side median ms per phase (latency pipelines)


def measure(label: str, workers: int, args: argparse.Namespace) -> Figures:
    figures = Figures(label)
    with tempfile.TemporaryDirectory(prefix="aicd-bench-workers-") as tmp, pg_database() as url:
        root = Path(tmp)
        cluster = Cluster(root, workers, args.concurrency)
        try:
            cluster.start(url)
            with cluster.client() as client:
                for name, files in (
                    ("flat", {".gitlab-ci.yml": flat_ci(args.jobs)}),
                    ("dag", {".gitlab-ci.yml": dag_ci(args.dag)}),
                    ("one", {".gitlab-ci.yml": one_ci()}),
                ):
                    (root / name).mkdir()
                    add_project(client, name, make_repo(root / name, files))
                assert cluster.server is not None
                cpu = cluster.server.cpu_s()
                everything = cluster.all_cpu_s()
                record, figures.flat_s = run_pipeline(client, "flat")
                figures.flat_cpu_ms = (cluster.server.cpu_s() - cpu) * 1000 / args.jobs
                figures.all_cpu_ms = (cluster.all_cpu_s() - everything) * 1000 / args.jobs
                figures.ok &= record["status"] == "success"
                record, figures.dag_s = run_pipeline(client, "dag")
                figures.ok &= record["status"] == "success"
                waits = []
                created: dict[int, float] = {}
                for _ in range(args.latency):
                    record, _wall = run_pipeline(client, "one")
                    figures.ok &= record["status"] == "success"
                    job = client.get(f"/projects/one/pipelines/{record['id']}/jobs").json()[0]
                    waits.append((job["started_at"] - job["created_at"]) * 1000)
                    created[int(job["id"])] = float(job["created_at"])
                if workers:
                    figures.phases = worker_phases(cluster, created)
                waits.sort()
                figures.p50_ms = statistics.median(waits)
                figures.p99_ms = waits[min(len(waits) - 1, round(0.99 * (len(waits) - 1)))]
        except SystemExit as exc:
            figures.ok = False
            figures.note = str(exc)[:300]
        finally:
            cluster.stop()
    return figures


_TIMING = re.compile(r"timings job=(\d+) entered=([0-9.]+) (.*)$", re.M)


def worker_phases(cluster: Cluster, created: dict[int, float]) -> dict[str, float]:
    """Median ms of each phase the workers logged (AICD_WORKER_TIMINGS=1) for the jobs in `created`;
    `to_worker`: from the job's creation on the server to its task starting on a worker (server,
    broker, Celery)."""
    found: dict[str, list[float]] = {}
    for worker in cluster.workers:
        for job_id, entered, rest in _TIMING.findall(worker.log()):
            if int(job_id) not in created:
                continue
            found.setdefault("to_worker", []).append((float(entered) - created[int(job_id)]) * 1000)
            for part in rest.split():
                name, _, value = part.partition("=")
                found.setdefault(name, []).append(float(value))
    return {name: statistics.median(values) for name, values in found.items()}


def render(results: list[Figures], args: argparse.Namespace) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()
    lines = [
        "# Benchmark: jobs on Celery workers against the in-process executor",
        "",
        f"`python benchmarks/workers.py --jobs {args.jobs} --dag {args.dag} --latency {args.latency}`, "
        f"{now}, {platform.node()}, {os.cpu_count()} cores, load before the run "
        f"{load[0]:.1f}; server on PostgreSQL, RabbitMQ, every job sandboxed; server concurrency "
        f"{args.concurrency}; each worker process runs one job at a time.",
        "",
        f"| executor | {args.jobs} flat jobs | jobs/s | server CPU per job | CPU per job, all aicd processes "
        f"| {args.dag}-job needs DAG | jobs/s | queue-to-start p50 | p99 | all pipelines succeeded |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in results:
        if not f.ok and not f.flat_s:
            lines.append(f"| {f.label} | failed: {f.note} | | | | | | | | no |")
            continue
        lines.append(
            f"| {f.label} | {f.flat_s:.1f} s | {args.jobs / f.flat_s:.1f} | {f.flat_cpu_ms:.1f} ms "
            f"| {f.all_cpu_ms:.1f} ms | {f.dag_s:.1f} s | {args.dag / f.dag_s:.1f} "
            f"| {f.p50_ms:.0f} ms | {f.p99_ms:.0f} ms "
            f"| {'yes' if f.ok else 'no'} |"
        )
    local = results[0]
    lines += [
        "",
        f"Target for the distributed path: queue-to-start p50 under {TARGET_P50_MS:.0f} ms. Queue-to-start: "
        "a single-job pipeline's job, from its row's `created_at` (the engine made it, ready: it needs "
        "nothing) to its `started_at` after it ended, both on the server's clock: in-process, when the "
        "executor began the attempt; on a worker, when the server got the worker's first heartbeat, which "
        "the worker sends once its executor began the attempt (claim at the server, source and executor "
        "ready on the worker).",
        "",
        "Per-job cost of the distributed path beside the local one (flat pipeline; CPU: user + system "
        "from /proc, `all aicd processes`: the server and the workers with the job processes they ran, "
        "not PostgreSQL or RabbitMQ):",
    ]
    for f in results[1:]:
        if f.flat_s and local.flat_s:
            lines.append(
                f"- {f.label}: {f.flat_s / args.jobs * 1000:.0f} ms of wall time per flat job "
                f"(in-process: {local.flat_s / args.jobs * 1000:.0f} ms); server CPU per job "
                f"{f.flat_cpu_ms:.1f} ms (in-process: {local.flat_cpu_ms:.1f} ms, which includes the "
                f"server's part of running the job); CPU per job of all aicd processes {f.all_cpu_ms:.1f} ms "
                f"(in-process: {local.all_cpu_ms:.1f} ms); queue-to-start p50 {f.p50_ms:.0f} ms "
                f"(in-process: {local.p50_ms:.0f} ms)."
            )
    timed = [f for f in results if f.phases]
    if timed:
        names = list(dict.fromkeys(name for f in timed for name in (f.phases or {})))
        lines += [
            "",
            "Where a single job's time goes on the worker (median ms over the latency pipelines; "
            "`to_worker`: from the job's creation on the server to its Celery task starting on the worker):",
            "",
            "| executor | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for f in timed:
            phases = f.phases or {}
            cells = " | ".join(f"{phases[n]:.1f}" if n in phases else "" for n in names)
            lines.append(f"| {f.label} | {cells} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--dag", type=int, default=200)
    parser.add_argument("--latency", type=int, default=50)
    parser.add_argument("--workers", default="1,2,4", help="worker process counts, comma-separated")
    parser.add_argument("--concurrency", type=int, default=8, help="the server's job limit")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    results = [measure("in-process", 0, args)]
    for count in (int(x) for x in args.workers.split(",") if x.strip()):
        results.append(measure(f"{count} worker{'s' if count > 1 else ''}", count, args))
    text = render(results, args)
    sys.stdout.write(text)
    if args.output:
        args.output.write_text(text)
    if not all(f.ok for f in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
