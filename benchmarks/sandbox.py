#!/usr/bin/env python3
"""Benchmark: the sandbox's cost per job, sandboxed vs plain, same jobs, one run.

One temporary git repository (a few files, one commit). Each round runs the same
job through both executors, one job at a time, alternating so that machine load
hits both alike:

  plain       LocalExecutor: the job's bash in its workspace (what `aicd run` does)
  sandboxed   SandboxExecutor: the same bash under bubblewrap (what `aicd server`
              and `aicd run --isolate` do): namespaces, mounts, limits, pids cgroup

A job is everything an executor does for one attempt: a fresh workspace copied
from the snapshot, variables, the script, the log, the outcome. Jobs:

  trivial     `echo hello`
  python      `python -c 'import json'` (a Python start inside the job)

The table shows the median and p90 wall time per job and the median difference
(sandboxed - plain), which is the sandbox's own cost. Target: under 10 ms per job.
The spawn row times the bare processes without aicd: `bash -c true` vs `bwrap ...
bash -c true` (the same bwrap command line a job gets), the floor of that cost.

    python benchmarks/sandbox.py                      # 50 jobs of each kind
    python benchmarks/sandbox.py --jobs 10            # quicker
    python benchmarks/sandbox.py --output benchmarks/results/sandbox.md
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aicd.executors.base import JobRequest
from aicd.executors.local import LocalExecutor
from aicd.executors.sandbox import SandboxExecutor, bwrap_args, probe, python_paths
from aicd.pipeline.ir import Job

JOBS = {"trivial": "echo hello", "python": "python -c 'import json'"}


def make_repo(root: Path) -> Path:
    repo = root / "project"
    (repo / "src").mkdir(parents=True)
    (repo / "README.md").write_text("bench\n")
    for i in range(20):
        (repo / "src" / f"m{i}.py").write_text(f"X = {i}\n")
    git = ["git", "-c", "user.email=b@example.com", "-c", "user.name=b"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "bench"], cwd=repo, check=True)
    return repo


async def time_jobs(
    executor: LocalExecutor, script: str, count: int, run_dir: Path, first_id: int
) -> list[float]:
    times: list[float] = []
    for i in range(count):
        job = Job(name=f"job{i}", base_name=f"job{i}", stage="test", script=(script,))
        request = JobRequest(
            job=job, job_id=first_id + i, attempt=1, pipeline_id=1, run_dir=run_dir, variables=()
        )
        started = time.perf_counter()
        handle = await executor.start(request, lambda _kind, _text: None)
        outcome = await handle.wait()
        times.append(time.perf_counter() - started)
        if outcome.status != "success":
            raise SystemExit(f"{executor.name}: job {i} did not pass: {outcome.log_path.read_text()}")
    return times


async def measure(repo: Path, root: Path, count: int) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {}
    for kind, script in JOBS.items():
        plain = LocalExecutor(repo, root / f"home-plain-{kind}", commit="HEAD")
        boxed = SandboxExecutor(repo, root / f"home-box-{kind}", commit="HEAD", die_with_parent=True)
        try:
            # warm-up: snapshots, caches, .pyc files
            await time_jobs(plain, script, 2, root / "warm", 1)
            await time_jobs(boxed, script, 2, root / "warm", 11)
            both: dict[str, list[float]] = {"plain": [], "sandboxed": []}
            for i in range(count):  # alternate: load hits both alike
                both["plain"] += await time_jobs(plain, script, 1, root / "runs", 1000 + i)
                both["sandboxed"] += await time_jobs(boxed, script, 1, root / "runs", 5000 + i)
            results[kind] = both
        finally:
            await plain.close()
            await boxed.close()
    return results


def spawn_times(count: int, root: Path) -> dict[str, list[float]]:
    found = probe()
    assert found.bwrap is not None
    workspace = root / "spawn-ws"
    workspace.mkdir(exist_ok=True)
    args = bwrap_args(
        network=True, python=python_paths((root,)), binds=[(workspace, workspace, True)], chdir=workspace
    )
    commands: dict[str, list[str]] = {
        "bash": ["bash", "-c", "true"],
        "bwrap + bash": [found.bwrap, *args, "--", "/bin/bash", "-c", "true"],
    }
    out: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(count):
        for name, command in commands.items():
            started = time.perf_counter()
            subprocess.run(command, check=True, stdin=subprocess.DEVNULL)
            out[name].append(time.perf_counter() - started)
    return out


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def ms(value: float) -> str:
    return f"{value * 1000:.1f}"


def table(results: dict[str, dict[str, list[float]]], spawn: dict[str, list[float]], count: int) -> list[str]:
    lines = [
        "| jobs | runs | plain median (ms) | plain p90 | sandboxed median (ms) | sandboxed p90 "
        "| sandbox cost per job (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, both in results.items():
        diffs = [b - a for a, b in zip(both["plain"], both["sandboxed"], strict=True)]
        lines.append(
            f"| {kind} | {count} | {ms(statistics.median(both['plain']))} | {ms(p90(both['plain']))} | "
            f"{ms(statistics.median(both['sandboxed']))} | {ms(p90(both['sandboxed']))} | "
            f"{ms(statistics.median(diffs))} |"
        )
    diffs = [b - a for a, b in zip(spawn["bash"], spawn["bwrap + bash"], strict=True)]
    lines.append(
        f"| spawn only (no aicd) | {len(spawn['bash'])} | {ms(statistics.median(spawn['bash']))} | "
        f"{ms(p90(spawn['bash']))} | {ms(statistics.median(spawn['bwrap + bash']))} | "
        f"{ms(p90(spawn['bwrap + bash']))} | {ms(statistics.median(diffs))} |"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=50, help="jobs of each kind per executor (default 50)")
    parser.add_argument("--output", type=Path, help="also write the report (markdown) here")
    args = parser.parse_args(argv)
    found = probe()
    if not found.ok:
        print(f"no sandbox here: {found.reason}", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="aicd-bench-sandbox-") as tmp:
        root = Path(tmp)
        repo = make_repo(root)
        results = asyncio.run(measure(repo, root, args.jobs))
        spawn = spawn_times(args.jobs, root)
    load_after = os.getloadavg()
    cost = max(
        statistics.median([b - a for a, b in zip(both["plain"], both["sandboxed"], strict=True)])
        for both in results.values()
    )
    rows = table(results, spawn, args.jobs)
    verdict = "met" if cost * 1000 < 10 else "NOT met"
    report = [
        "# The sandbox's cost per job",
        "",
        f"`python benchmarks/sandbox.py --jobs {args.jobs}`, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        *rows,
        "",
        f"Target: under 10 ms per job: {verdict} (the largest median cost: {cost * 1000:.1f} ms).",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"Python {platform.python_version()}; bwrap {found.bwrap}; "
        f"process limit: {'pids cgroup' if found.pids_cgroup else 'RLIMIT_NPROC'}.",
        f"Load average (1, 5, 15 min): before {' '.join(f'{v:.2f}' for v in load_before)}, "
        f"after {' '.join(f'{v:.2f}' for v in load_after)}.",
    ]
    text = "\n".join(report) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
