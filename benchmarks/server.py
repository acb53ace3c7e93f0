#!/usr/bin/env python3
"""Benchmark: `aicd server` on SQLite and on PostgreSQL, with gitlab-ci-local as the peer.

Two measurements, each on a fresh server (its own AICD_HOME and database) started as
a subprocess on 127.0.0.1, against a real git repository in a temporary folder:

  webhook -> job running   --pushes commits (default 50), one at a time: commit, then a
                           signed GitHub `push` webhook POST; the figure is the time from
                           just before the POST to the `started_at` the server recorded for
                           the pipeline's first job (same machine clock). Median and p99.
  20 x 10 concurrent       20 pipelines of 10 jobs each (`echo` plus a small file write),
                           triggered through the API at once; wall time from the first
                           POST to the last pipeline finished. Every pipeline must end
                           `success` with 10 jobs, and the server log must not contain
                           "database is locked" (both checked; a run that fails them is
                           reported as failed, not timed).

The peer for the second measurement is the reference local runner doing the same work:
20 `gitlab-ci-local` processes at once, one per copy of the repository. GitLab.com's
own webhook latency cannot be measured here (no network), so the first measurement
has no peer column; the issue's target (median under 150 ms) is printed beside it.

    python benchmarks/server.py                      # SQLite and PostgreSQL (a few minutes)
    python benchmarks/server.py --quick              # 5 pushes, 4 x 10 (smoke test)
    python benchmarks/server.py --output benchmarks/results/server.md

PostgreSQL: AICD_BENCH_PG (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres)
names a server where a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

API = "/api/v1"
SECRET = "bench-webhook-secret"
PG_ADMIN = os.environ.get("AICD_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
GCL_VERSION = "4.60.1"
TARGET_MS = 150.0


def sh(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def git(repo: Path, *args: str) -> str:
    return sh("git", "-C", str(repo), *args)


def make_repo(root: Path, ci: str) -> Path:
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "bench@example.com")
    git(repo, "config", "user.name", "bench")
    (repo / ".gitlab-ci.yml").write_text(ci)
    (repo / "counter.txt").write_text("0\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    return repo


ONE_JOB = "stages: [build]\nbuild:\n  stage: build\n  script:\n    - echo built\n"


def ten_jobs() -> str:
    lines = ["stages: [a, b]"]
    for i in range(10):
        stage = "a" if i < 5 else "b"
        lines += [
            f"job{i}:",
            f"  stage: {stage}",
            "  script:",
            f"    - echo job {i}",
            f"    - echo {i} > out{i}.txt",
        ]
    return "\n".join(lines) + "\n"


# -- the server ------------------------------------------------------------------------------------


class Server:
    def __init__(self, home: Path, database_url: str) -> None:
        self.home = home
        self.database_url = database_url
        self.log_path = home.parent / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AICD_", "CI_", "GITLAB_"))}
        env["AICD_DATABASE_URL"] = self.database_url
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        command = [sys.executable, "-m", "aicd.cli.main", "server", "--host", "127.0.0.1", "--port", "0"]
        command += ["--home", str(self.home), "--no-poll", "--allowed-repo-root", str(self.home.parent)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"aicd server exited:\n{self.log()}")
            found = re.search(r"aicd server listening on (http://\S+)", self.log())
            if found:
                self.url = found.group(1)
                try:
                    if httpx.get(f"{self.url}{API}/health", timeout=2).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        raise SystemExit(f"aicd server not ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self) -> httpx.Client:
        token = (self.home / "admin-token").read_text().strip()
        return httpx.Client(
            base_url=f"{self.url}{API}", headers={"Authorization": f"Bearer {token}"}, timeout=120
        )


@contextmanager
def database(backend: str, root: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{root / 'home' / 'aicd.db'}"
        return
    import sqlalchemy

    name = f"aicd_bench_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextmanager
def running_server(backend: str, ci: str) -> Iterator[tuple[Server, httpx.Client, Path]]:
    with tempfile.TemporaryDirectory(prefix="aicd-bench-server-") as tmp:
        root = Path(tmp)
        repo = make_repo(root, ci)
        with database(backend, root) as url:
            server = Server(root / "home", url)
            server.start()
            try:
                with server.client() as client:
                    answer = client.post(
                        "/projects",
                        json={
                            "name": "bench",
                            "repo_url": str(repo),
                            "default_branch": "main",
                            "pipeline_file": ".gitlab-ci.yml",
                            "poll_interval_s": None,
                            "webhook_secret": SECRET,
                        },
                    )
                    answer.raise_for_status()
                    yield server, client, repo
            finally:
                server.stop()


def wait_pipeline(client: httpx.Client, pipeline_id: int, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record: dict[str, Any] = client.get(f"/projects/bench/pipelines/{pipeline_id}").json()
        if record["status"] in ("success", "failed", "canceled", "skipped"):
            return record
        time.sleep(0.02)
    raise SystemExit(f"pipeline {pipeline_id} did not finish in {timeout} s")


# -- measurement 1: webhook -> first job running ------------------------------------------------------


def push_payload(repo: Path, before: str, after: str) -> bytes:
    body = {
        "ref": "refs/heads/main",
        "before": before,
        "after": after,
        "repository": {"full_name": "bench/repo", "clone_url": str(repo)},
        "pusher": {"name": "bench"},
        "head_commit": {"id": after, "message": "bench"},
    }
    return json.dumps(body).encode()


def webhook_latency(backend: str, pushes: int) -> dict[str, Any]:
    samples: list[float] = []
    with running_server(backend, ONE_JOB) as (_server, client, repo):
        for i in range(pushes):
            before = git(repo, "rev-parse", "HEAD")
            (repo / "counter.txt").write_text(f"{i + 1}\n")
            git(repo, "commit", "-q", "-am", f"push {i + 1}")
            after = git(repo, "rev-parse", "HEAD")
            body = push_payload(repo, before, after)
            signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            headers = {
                "Content-Type": "application/json",
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": signature,
            }
            sent = time.time()
            answer = client.post("/projects/bench/hooks/github", content=body, headers=headers)
            answer.raise_for_status()
            pipeline_id = answer.json()["pipeline_id"]
            record = wait_pipeline(client, pipeline_id)
            if record["status"] != "success":
                raise SystemExit(f"pipeline {pipeline_id} ended {record['status']}: {record.get('error')}")
            jobs = client.get(f"/projects/bench/pipelines/{pipeline_id}/jobs").json()
            started = min(j["started_at"] for j in jobs if j["started_at"] is not None)
            samples.append((started - sent) * 1000)
    samples.sort()
    return {
        "pushes": pushes,
        "median_ms": statistics.median(samples),
        "p99_ms": samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))],
        "min_ms": samples[0],
        "max_ms": samples[-1],
    }


# -- measurement 2: N concurrent pipelines of 10 jobs ----------------------------------------------------


def concurrent_pipelines(backend: str, count: int) -> dict[str, Any]:
    with running_server(backend, ten_jobs()) as (server, client, _repo):
        # one unmeasured pipeline: the mirror and the commit's tree are made once
        first = client.post("/projects/bench/pipelines", json={"ref": "main"}).json()
        wait_pipeline(client, first["id"])
        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=count) as pool:
            created = list(
                pool.map(
                    lambda _: client.post("/projects/bench/pipelines", json={"ref": "main"}).json(),
                    range(count),
                )
            )
        finals = [wait_pipeline(client, p["id"]) for p in created]
        wall = time.monotonic() - start
        ok = all(p["status"] == "success" for p in finals)
        jobs_ok = all(
            len(
                [
                    j
                    for j in client.get(f"/projects/bench/pipelines/{p['id']}/jobs").json()
                    if j["status"] == "success"
                ]
            )
            == 10
            for p in finals
        )
        locked = server.log().count("database is locked")
    return {"pipelines": count, "wall_s": wall, "all_success": ok and jobs_ok, "locked_errors": locked}


def gitlab_ci_local_concurrent(count: int) -> dict[str, Any] | None:
    gcl = shutil.which("gitlab-ci-local")
    if gcl is None:
        return None
    with tempfile.TemporaryDirectory(prefix="aicd-bench-gcl-") as tmp:
        root = Path(tmp)
        base = make_repo(root, ten_jobs())
        repos = []
        for i in range(count):
            copy = root / f"copy{i}"
            sh("git", "clone", "-q", str(base), str(copy))
            repos.append(copy)
        command = [gcl, "--shell-isolation", "--quiet", "--no-color"]
        subprocess.run(command, cwd=base, capture_output=True, check=True)  # warm-up
        start = time.monotonic()
        procs = [
            subprocess.Popen(command, cwd=r, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for r in repos
        ]
        codes = [p.wait() for p in procs]
        wall = time.monotonic() - start
    return {"pipelines": count, "wall_s": wall, "all_success": all(c == 0 for c in codes)}


# -- report ---------------------------------------------------------------------------------------------


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "# `aicd server` benchmark",
        "",
        f"{dt.date.today().isoformat()}, {platform.python_version()}, {os.cpu_count()} cores, "
        f"load average {results['load_at_start']:.1f} at the start; `python benchmarks/server.py"
        f"{' --quick' if args.quick else ''}`.",
        "",
        f"## Webhook POST to first job running ({args.pushes} pushes, one at a time)",
        "",
        "| database | median | p99 | min | max | target (median) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for backend, r in results["webhook"].items():
        lines.append(
            f"| {backend} | {r['median_ms']:.0f} ms | {r['p99_ms']:.0f} ms | {r['min_ms']:.0f} ms | "
            f"{r['max_ms']:.0f} ms | < {TARGET_MS:.0f} ms |"
        )
    lines += [
        "",
        f"## {args.pipelines} concurrent pipelines of 10 jobs",
        "",
        '| runner | wall time | all succeeded | "database is locked" in the log |',
        "|---|---:|---|---:|",
    ]
    for backend, r in results["concurrent"].items():
        lines.append(
            f"| aicd server, {backend} | {r['wall_s']:.2f} s | {'yes' if r['all_success'] else 'NO'} | "
            f"{r['locked_errors']} |"
        )
    peer = results.get("gitlab-ci-local")
    if peer:
        lines.append(
            f"| gitlab-ci-local {GCL_VERSION}, {args.pipelines} processes | {peer['wall_s']:.2f} s | "
            f"{'yes' if peer['all_success'] else 'NO'} | n/a |"
        )
    elif args.no_peer:
        lines.append("| gitlab-ci-local | skipped (--no-peer) | | |")
    else:
        lines.append(f"| gitlab-ci-local | not installed (`npm i -g gitlab-ci-local@{GCL_VERSION}`) | | |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="5 pushes, 4 pipelines")
    parser.add_argument("--pushes", type=int, default=50)
    parser.add_argument("--pipelines", type=int, default=20)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--no-peer", action="store_true", help="skip gitlab-ci-local")
    parser.add_argument("--output", type=Path, default=None, help="also write the Markdown table here")
    args = parser.parse_args()
    if args.quick:
        args.pushes, args.pipelines = 5, 4
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    results: dict[str, Any] = {"webhook": {}, "concurrent": {}, "load_at_start": os.getloadavg()[0]}
    for backend in backends:
        print(f"[{backend}] webhook -> job running, {args.pushes} pushes ...", flush=True)
        results["webhook"][backend] = webhook_latency(backend, args.pushes)
        print(f"[{backend}] {args.pipelines} concurrent pipelines x 10 jobs ...", flush=True)
        results["concurrent"][backend] = concurrent_pipelines(backend, args.pipelines)
    if not args.no_peer:
        print(f"[gitlab-ci-local] {args.pipelines} concurrent pipelines x 10 jobs ...", flush=True)
        results["gitlab-ci-local"] = gitlab_ci_local_concurrent(args.pipelines)
    text = report(results, args)
    print(text)
    if args.output:
        args.output.write_text(text)
    failed = [b for b, r in results["concurrent"].items() if not r["all_success"] or r["locked_errors"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
