#!/usr/bin/env python3
"""Benchmark: what giving each job a Git checkout costs, against the alternatives.

For a repository (a generated one of --files files, and with --repo any existing one), the time
to prepare ONE job's workspace, median over --jobs workspaces, by:

  files only         a copy of the tracked files, no .git (aicd before jobs had a checkout;
                     AICD_JOB_CHECKOUT=files)
  aicd checkout      what aicd does: a copy of the run's checkout template, whose .git is written
                     directly (objects through alternates), so each job copies a few more files
  clone --shared     `git clone --shared --no-checkout` of the run's private origin, then
                     `git checkout` (two git processes per job)
  clone --local      `git clone --local` (hard links to the objects) and its checkout

and, once per run, what making the template and the private origin costs (aicd checkout's setup).
Every workspace is checked: `git rev-parse HEAD` is the commit (files only: the files are there).

    python benchmarks/checkout.py                       # 200 and 2,000 files
    python benchmarks/checkout.py --repo . --jobs 30     # this repository too
    python benchmarks/checkout.py --output benchmarks/results/checkout.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from aicd.executors.checkout import GitSettings, PipelineGit, Ref
from aicd.executors.workspace import Snapshot, snapshot_worktree

GIT_ID = ["-c", "user.email=bench@example.com", "-c", "user.name=bench"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(root: Path, files: int) -> Path:
    """A repository of `files` small files in nested folders, with 30 commits and a tag."""
    repo = root / f"repo-{files}"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    for i in range(files):
        path = repo / f"pkg{i % 20}" / f"mod{i % 7}" / f"file{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"VALUE = {i}\n" * 20)
    git(repo, "add", "-A")
    git(repo, *GIT_ID, "commit", "-q", "-m", "initial")
    git(repo, "tag", "v1.0.0")
    for c in range(29):
        (repo / "pkg0" / "CHANGES.txt").write_text(f"change {c}\n")
        git(repo, "add", "-A")
        git(repo, *GIT_ID, "commit", "-q", "-m", f"change {c}")
    return repo


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def cpu_now() -> float:
    """CPU time of this process and of the children it waited for (the git processes)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def time_jobs(
    jobs: int, methods: dict[str, Callable[[Path], None]], root: Path
) -> dict[str, tuple[list[float], list[float]]]:
    """Each method prepares `jobs` workspaces, the methods taking turns (so a change in the
    machine's load falls on all of them alike): (wall times, CPU times) per method."""
    out: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in methods}
    for i in range(jobs):
        for name, prepare in methods.items():
            ws = root / name / f"job-{i}"
            cpu, start = cpu_now(), time.perf_counter()
            prepare(ws)
            out[name][0].append(time.perf_counter() - start)
            out[name][1].append(cpu_now() - cpu)
    shutil.rmtree(root, ignore_errors=True)
    return out


def measure(repo: Path, jobs: int, scratch: Path) -> dict[str, float]:
    sha = git(repo, "rev-parse", "HEAD")
    out: dict[str, float] = {}
    plain = snapshot_worktree(repo, scratch / "plain")

    start = time.perf_counter()
    pgit = PipelineGit(repo, scratch / "run", dirty_from=None)
    template_dir, _ = pgit.checkout(sha, Ref(branch="main"), GitSettings())
    template = Snapshot.scan(template_dir)
    out["setup"] = (time.perf_counter() - start) * 1000

    check = scratch / "check"
    template.materialize(check)
    assert git(check, "rev-parse", "HEAD") == sha and git(check, "status", "--porcelain") == ""
    shutil.rmtree(check)

    origin = str(pgit.origin)

    def shared(ws: Path) -> None:
        subprocess.run(["git", "clone", "-q", "--shared", "--no-checkout", origin, str(ws)], check=True)
        subprocess.run(["git", "-C", str(ws), "checkout", "-q", "--detach", sha], check=True)

    def local(ws: Path) -> None:
        subprocess.run(["git", "clone", "-q", "--local", "--no-checkout", str(repo), str(ws)], check=True)
        subprocess.run(["git", "-C", str(ws), "checkout", "-q", "--detach", sha], check=True)

    methods = {"files": plain.materialize, "aicd": template.materialize, "shared": shared, "local": local}
    for name, (wall, cpu) in time_jobs(jobs, methods, scratch / "ws").items():
        out[name] = median_ms(wall)
        out[f"{name}_cpu"] = median_ms(cpu)
    out["files_n"] = len(plain.entries)
    return out


def table(rows: Sequence[tuple[str, dict[str, float]]]) -> str:
    head = (
        "| repository | files | files only (ms/job) | aicd checkout (ms/job) | checkout - files (ms/job) | "
        "clone --shared + checkout (ms/job) | clone --local + checkout (ms/job) | "
        "aicd setup, once per run (ms) |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows:
        lines.append(
            f"| {name} | {int(r['files_n'])} | {r['files']:.2f} | {r['aicd']:.2f} | "
            f"{r['aicd'] - r['files']:.2f} | {r['shared']:.2f} | {r['local']:.2f} | {r['setup']:.1f} |"
        )
    lines += [
        "",
        "CPU time per job, median (ms; this process and the git processes it waited for: less "
        "sensitive to other load than wall time):",
        "",
        "| repository | files only | aicd checkout | checkout - files | clone --shared | clone --local |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['files_cpu']:.2f} | {r['aicd_cpu']:.2f} | {r['aicd_cpu'] - r['files_cpu']:.2f} | "
            f"{r['shared_cpu']:.2f} | {r['local_cpu']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", default="200,2000", help="sizes of the generated repositories")
    p.add_argument("--repo", action="append", default=[], help="an existing repository to measure too")
    p.add_argument("--jobs", type=int, default=20, help="workspaces per method (median)")
    p.add_argument("--output", help="write the report (markdown) here")
    args = p.parse_args(argv)
    rows: list[tuple[str, dict[str, float]]] = []
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="aicd-bench-checkout-") as tmp:
        root = Path(tmp)
        for n in (int(x) for x in args.files.split(",") if x):
            repo = make_repo(root, n)
            rows.append((f"generated, {n} files, 30 commits", measure(repo, args.jobs, root / f"s{n}")))
            print(f"measured generated {n}", file=sys.stderr)
        for i, given in enumerate(args.repo):
            path = Path(given).resolve()
            rows.append((path.name, measure(path, args.jobs, root / f"r{i}")))
            print(f"measured {path}", file=sys.stderr)
    report = "\n".join(
        [
            "# A Git checkout in every job: what it costs",
            "",
            f"Date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}  ",
            f"Machine: {os.cpu_count()} cores; load average (1 min) at start / end: "
            f"{load_start:.2f} / {os.getloadavg()[0]:.2f}  ",
            f"Command: `python benchmarks/checkout.py {' '.join(argv or sys.argv[1:])}`  ",
            f"Median of {args.jobs} job workspaces per method.",
            "",
            table(rows),
            "",
            "files only = a copy of the tracked files without `.git` (`AICD_JOB_CHECKOUT=files`); aicd "
            "checkout = a copy of the run's checkout template (its `.git` written directly, objects read "
            "through `objects/info/alternates`); clone --shared / --local = what a runner-style clone per "
            "job would cost instead. aicd setup = the private origin and the template, once per run (and "
            "once per other `GIT_DEPTH`/submodule setting).",
        ]
    )
    print(report)
    if args.output:
        Path(args.output).write_text(report + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
