#!/usr/bin/env python3
"""Benchmark: how `aicd lint` and `aicd run` grow with the size of the pipeline.

Generated pipelines of 10, 100, 1,000 and 5,000 jobs, of two shapes (the generators
of benchmarks/local_run.py), each in a fresh temporary git repository:

  independent   N jobs in one stage, `echo` plus a builtin, no artifacts
  dag           N jobs over 5 stages linked by `needs` (each needs 1-3 earlier jobs),
                each writes a small artifact its dependants read

For each (shape, size): `aicd lint --json` (parse, resolve, lint), `aicd run --json`
(everything) and `aicd run --isolate --json` (every job in the bubblewrap sandbox; step
`isolate`, left out with --no-isolate or where the sandbox cannot run), --repeat times each,
the repository reset to its commit before every run. The isolate rows print the sandbox's
extra cost per job beside the plain run's.
It prints the median wall time, the time per job, the per-job cost relative to the
100-job size (the target: within 1.5x at 5,000), and the peak RSS of the aicd process
(`wait4`'s ru_maxrss: the largest of aicd and the job shells it waited for; the job
shells are a few MB).

With --untracked MB, a folder of that many MB of untracked files (not ignored, and an
ignored one of the same size) is present in the repository while aicd runs: a job's
workspace must not grow with content it does not need.

Every run is checked (exit 0, and for runs every job passed). Figures depend on the
machine's load: the report prints the load average beside them.

    python benchmarks/scale.py                          # 10..5000, both shapes
    python benchmarks/scale.py --sizes 10,100 --repeat 1 # quick
    python benchmarks/scale.py --only run --shape independent --untracked 200
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from local_run import (  # a script beside this one
    PipelineSpec,
    bench_env,
    dag,
    find_aicd,
    independent,
    make_repo,
    reset,
    verify_aicd,
)

SIZES = (10, 100, 1000, 5000)
LINEAR_TARGET = 1.5  # per-job cost at the largest size within this factor of the 100-job one
RSS_TARGET_MB = 200.0


@dataclass
class Measure:
    walls: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def wall(self) -> float | None:
        return statistics.median(self.walls) if self.walls and not self.errors else None

    @property
    def rss(self) -> float | None:
        return max(self.rss_mb) if self.rss_mb else None


def timed(argv: list[str], repo: Path, timeout: float) -> tuple[float, float, int, str, str]:
    """Wall seconds, peak RSS (MB), exit code, stdout, stderr of one command."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv, cwd=repo, env=bench_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return wall, usage.ru_maxrss / 1024, proc.returncode, out.read().decode(), err.read().decode()


def verify_lint(spec: PipelineSpec, code: int, stdout: str) -> str | None:
    try:
        data = json.loads(stdout)
    except ValueError:
        return f"exit {code}, no JSON"
    jobs = data.get("jobs", [])
    if code != 0 or len(jobs) != len(spec.jobs):
        return f"exit {code}, {len(jobs)}/{len(spec.jobs)} jobs: {data.get('diagnostics', [])[:3]}"
    return None


def add_untracked(repo: Path, megabytes: int) -> None:
    """`megabytes` MB of untracked files in data/ and as much ignored in cache/ (1 MB files)."""
    (repo / ".gitignore").write_text("cache/\n")
    subprocess.run(["git", "add", ".gitignore"], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.email=b@example.com", "-c", "user.name=b", "commit", "-qm", "ignore"],
        cwd=repo,
        check=True,
    )
    block = os.urandom(1 << 20)
    for folder in ("data", "cache"):
        (repo / folder).mkdir()
        for i in range(megabytes):
            (repo / folder / f"part{i:05d}.bin").write_bytes(block)


def bench(
    aicd: str,
    spec: PipelineSpec,
    root: Path,
    what: Sequence[str],
    repeat: int,
    untracked: int,
    timeout: float,
) -> dict[str, Measure]:
    repo = make_repo(root, spec)
    keep = ("data", "cache") if untracked else ()
    if untracked:
        add_untracked(repo, untracked)
    out: dict[str, Measure] = {}
    for kind in what:
        m = out.setdefault(kind, Measure())
        for i in range(repeat + 1):  # the first run warms caches and is not counted
            reset(repo, keep)
            argv = [aicd, "run", "--isolate", "--json"] if kind == "isolate" else [aicd, kind, "--json"]
            wall, rss, code, stdout, stderr = timed(argv, repo, timeout)
            if kind == "lint":
                error = verify_lint(spec, code, stdout)
            else:
                error = verify_aicd(spec, subprocess.CompletedProcess(argv, code, stdout, stderr))
            if i == 0 and error is None:
                continue
            if error:
                m.errors.append(error)
                break
            m.walls.append(wall)
            m.rss_mb.append(rss)
    return out


def sandbox_missing() -> str | None:
    """Why `aicd run --isolate` cannot run here, or None when it can (aicd's own probe)."""
    try:
        from aicd.executors.sandbox import probe
    except ImportError:
        return "aicd is not importable by this Python"
    found = probe()
    return None if found.ok else str(found.reason)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=",".join(map(str, SIZES)))
    p.add_argument("--shape", choices=("independent", "dag", "both"), default="both")
    p.add_argument("--only", choices=("lint", "run", "both"), default="both")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--untracked", type=int, default=0, metavar="MB")
    p.add_argument("--no-isolate", action="store_true", help="leave out `aicd run --isolate`")
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument("--json", dest="json_out", default=None, help="Write raw figures here.")
    args = p.parse_args(argv)
    aicd = find_aicd()
    if aicd is None:
        print("aicd is not installed beside this Python or on PATH", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",")]
    shapes = ["independent", "dag"] if args.shape == "both" else [args.shape]
    what = ["lint", "run"] if args.only == "both" else [args.only]
    if "run" in what and not args.no_isolate:
        reason = sandbox_missing()
        if reason is None:
            what.append("isolate")
        else:
            print(f"no isolate rows: {reason}")
    load = os.getloadavg()
    print(f"load average before: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; repeat {args.repeat} (medians)")
    if args.untracked:
        print(f"with {args.untracked} MB untracked and {args.untracked} MB ignored files in the repository")
    rows: list[dict[str, object]] = []
    header = (
        f"{'shape':<12} {'jobs':>5} {'step':<7} {'median s':>9} {'ms/job':>8} {'x vs 100':>8} {'RSS MB':>7}"
        "  load  isolate vs run"
    )
    print(header)
    with tempfile.TemporaryDirectory(prefix="aicd-scale-") as tmp:
        for shape in shapes:
            per_job_100: dict[str, float] = {}
            for n in sizes:
                run_per_job: float | None = None
                spec = independent(n) if shape == "independent" else dag(n)
                result = bench(
                    aicd, spec, Path(tmp) / f"{shape}-{n}", what, args.repeat, args.untracked, args.timeout
                )
                for kind, m in result.items():
                    wall = m.wall
                    per_job = None if wall is None else wall / n * 1000
                    if n == 100 and per_job is not None:
                        per_job_100[kind] = per_job
                    ratio = (
                        None if per_job is None or kind not in per_job_100 else per_job / per_job_100[kind]
                    )
                    if kind == "run":
                        run_per_job = per_job
                    extra = None
                    if kind == "isolate" and per_job is not None and run_per_job is not None:
                        extra = per_job - run_per_job
                    cells = [
                        f"{shape:<12} {n:>5} {kind:<7}",
                        f"{wall:>9.3f}" if wall is not None else f"{'error':>9}",
                        f"{per_job:>8.2f}" if per_job is not None else f"{'-':>8}",
                        f"{ratio:>8.2f}" if ratio is not None else f"{'-':>8}",
                        f"{m.rss:>7.1f}" if m.rss is not None else f"{'-':>7}",
                        f"{os.getloadavg()[0]:>5.1f}",
                        f" {extra:+.2f} ms/job" if extra is not None else "",
                    ]
                    print(" ".join(cells) + ("  " + m.errors[0][:200] if m.errors else ""), flush=True)
                    rows.append(
                        {
                            "shape": shape,
                            "jobs": n,
                            "step": kind,
                            "wall_s": wall,
                            "walls": m.walls,
                            "ms_per_job": per_job,
                            "vs_100": ratio,
                            "rss_mb": m.rss,
                            "load": os.getloadavg()[0],
                            "isolate_extra_ms_per_job": extra,
                            "errors": m.errors,
                        }
                    )
    load = os.getloadavg()
    print(f"load average after: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    biggest = max(sizes)
    for row in rows:
        if row["jobs"] == biggest and row["vs_100"] is not None:
            ok = float(str(row["vs_100"])) <= LINEAR_TARGET
            print(
                f"target linear ({row['shape']} {row['step']}, {biggest} vs 100 per job "
                f"<= {LINEAR_TARGET}x): {'met' if ok else 'NOT met'}"
            )
        if row["jobs"] == biggest and row["rss_mb"] is not None:
            ok = float(str(row["rss_mb"])) < RSS_TARGET_MB
            print(
                f"target RSS ({row['shape']} {row['step']}, < {RSS_TARGET_MB:.0f} MB): "
                f"{'met' if ok else 'NOT met'}"
            )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"load": load, "rows": rows}, indent=2))
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
