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
CPU per job: the CPU time of this process and of every process it started (the
job's, bwrap's) during the job, from a cpuacct cgroup this benchmark moves itself
into (where cgroup v1's cpuacct can be written; "n/a" otherwise).

The layer table times the launch chain alone, one layer added at a time
(`bash -c 'echo hello'` each time, one event loop, alternating): bash; bwrap with
its namespaces and /usr only; bwrap with a job's whole option set; the same with
aicd's launch handshake (rlimits with prlimit(2) and the pooled pids cgroup set on
the sandbox's first process before it gets the script); and, for comparison, the
previous chain (`sh` joining a new pids cgroup, `prlimit(1)`, then bwrap).

    python benchmarks/sandbox.py                      # 50 jobs of each kind
    python benchmarks/sandbox.py --jobs 10            # quicker
    python benchmarks/sandbox.py --output benchmarks/results/sandbox.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aicd.executors.base import JobRequest
from aicd.executors.local import Launch, LocalExecutor, ShellSpec
from aicd.executors.sandbox import (
    PidsCgroups,
    SandboxExecutor,
    SandboxLimits,
    _namespace_args,
    _rlimits,
    bwrap_args,
    probe,
    python_paths,
)
from aicd.pipeline.ir import Job

JOBS = {
    "trivial": "echo hello",
    "python": "python -c 'import json'",
    # the same trivial job without the per-job pids cgroup (AICD_JOB_MAX_PROCESSES=0): what the
    # cgroup move costs (cgroup v1 waits for an RCU grace period on a move)
    "trivial, no pids cgroup": "echo hello",
}


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


class CpuMeter:
    """CPU time (ns) of this process and of all it starts, from a cpuacct cgroup of its own."""

    def __init__(self) -> None:
        self.group: Path | None = None
        base = Path("/sys/fs/cgroup/cpuacct")
        group = base / f"aicd-bench-{os.getpid()}"
        try:
            group.mkdir()
            (group / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            with contextlib.suppress(OSError):
                group.rmdir()
            return
        self.base, self.group = base, group

    def usage(self) -> int | None:
        if self.group is None:
            return None
        return int((self.group / "cpuacct.usage").read_text())

    def close(self) -> None:
        if self.group is None:
            return
        with contextlib.suppress(OSError):
            (self.base / "cgroup.procs").write_text(str(os.getpid()))
        for _ in range(100):  # the last jobs' processes may still be exiting
            try:
                self.group.rmdir()
                break
            except OSError:
                time.sleep(0.05)
        self.group = None


METER: CpuMeter | None = None
# A pause after each job and each launch, outside the timing: a sandbox's teardown (its mount
# namespace, its last processes) goes on after the launcher aicd waits for has exited. Without the
# pause it would land in the next job's time (2-6 ms measured, whichever executor runs next) and
# its CPU time in the next job's CPU figure.
SETTLE_S = 0.03


async def time_jobs(
    executor: LocalExecutor,
    script: str,
    count: int,
    run_dir: Path,
    first_id: int,
    cpu: list[float] | None = None,
) -> list[float]:
    times: list[float] = []
    for i in range(count):
        job = Job(name=f"job{i}", base_name=f"job{i}", stage="test", script=(script,))
        request = JobRequest(
            job=job, job_id=first_id + i, attempt=1, pipeline_id=1, run_dir=run_dir, variables=()
        )
        used = METER.usage() if METER is not None else None
        started = time.perf_counter()
        handle = await executor.start(request, lambda _kind, _text: None)
        outcome = await handle.wait()
        times.append(time.perf_counter() - started)
        await asyncio.sleep(SETTLE_S)
        after = METER.usage() if METER is not None else None
        if cpu is not None and used is not None and after is not None:
            cpu.append((after - used) / 1e9)
        if outcome.status != "success":
            raise SystemExit(f"{executor.name}: job {i} did not pass: {outcome.log_path.read_text()}")
    return times


async def measure(
    repo: Path, root: Path, count: int
) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, list[float]]]]:
    results: dict[str, dict[str, list[float]]] = {}
    cpu: dict[str, dict[str, list[float]]] = {}
    for kind, script in JOBS.items():
        plain = LocalExecutor(repo, root / f"home-plain-{kind}", commit="HEAD")
        limits = SandboxLimits(processes=None) if "no pids cgroup" in kind else SandboxLimits()
        boxed = SandboxExecutor(
            repo, root / f"home-box-{kind}", commit="HEAD", die_with_parent=True, limits=limits
        )
        try:
            # warm-up: snapshots, caches, .pyc files
            await time_jobs(plain, script, 2, root / "warm", 1)
            await time_jobs(boxed, script, 2, root / "warm", 11)
            both: dict[str, list[float]] = {"plain": [], "sandboxed": []}
            used: dict[str, list[float]] = {"plain": [], "sandboxed": []}
            for i in range(count):  # alternate: load hits both alike
                both["plain"] += await time_jobs(plain, script, 1, root / "runs", 1000 + i, used["plain"])
                both["sandboxed"] += await time_jobs(
                    boxed, script, 1, root / "runs", 5000 + i, used["sandboxed"]
                )
            results[kind] = both
            cpu[kind] = used
        finally:
            await plain.close()
            await boxed.close()
    return results, cpu


async def layer_times(
    count: int, root: Path, repo: Path
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """The launch chain alone, one layer at a time (see the module's docstring)."""
    found = probe()
    assert found.bwrap is not None
    bwrap = found.bwrap
    workspace = root / "layer-ws"
    workspace.mkdir(exist_ok=True)
    script = root / "layer.sh"
    script.write_text("echo hello\n")
    executor = SandboxExecutor(repo, root / "home-layers", die_with_parent=True)
    limits = SandboxLimits()
    full = bwrap_args(
        network=True,
        python=executor._python,
        binds=[(workspace, workspace, True), (script, Path("/aicd/layer.sh"), False)],
        chdir=workspace,
        tmp_bytes=limits.tmp_bytes,
    )
    usr = [
        "--ro-bind",
        "/usr",
        "/usr",
        *(a for d in ("bin", "lib", "lib64") for a in ("--symlink", f"usr/{d}", f"/{d}")),
    ]
    job = Job(name="layer", base_name="layer", stage="test", script=("echo hello",))
    request = JobRequest(
        job=job, job_id=1, attempt=1, pipeline_id=1, run_dir=root / "layer-run", variables=()
    )
    spec = ShellSpec(request, script, workspace, executor.base_env(), {}, None)
    bash = ["/bin/bash", "--noprofile", "--norc", "/aicd/layer.sh"]
    old_cgroups = PidsCgroups.create(limits.processes or 1024)
    prlimit = shutil.which("prlimit")
    out: dict[str, list[float]] = {name: [] for name in LAYERS}
    cpu: dict[str, list[float]] = {name: [] for name in LAYERS}

    async def run(argv: list[str], env: dict[str, str] | None = None, launch: Launch | None = None) -> float:
        started = time.perf_counter()
        used = METER.usage() if METER is not None else None
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            pass_fds=launch.pass_fds if launch else (),
        )
        try:
            if launch is not None and launch.started is not None:
                await launch.started(proc.pid)
            code = await proc.wait()
        finally:
            if launch is not None and launch.cleanup is not None:
                launch.cleanup()
        if code != 0:
            raise SystemExit(f"{argv[0]} ... exited with {code}")
        took = time.perf_counter() - started
        await asyncio.sleep(SETTLE_S)
        if used is not None:
            after = METER.usage() if METER is not None else None
            if after is not None:
                cpu_used.append((after - used) / 1e9)
        return took

    cpu_used: list[float] = []

    def record(name: str, took: float) -> None:
        out[name].append(took)
        if cpu_used:
            cpu[name].append(cpu_used.pop())

    try:
        for _ in range(count):
            record("bash", await run(["/bin/bash", "--noprofile", "--norc", str(script)]))
            minimal = [
                bwrap,
                *_namespace_args(network=True),
                *usr,
                "--ro-bind",
                str(script),
                "/aicd/layer.sh",
            ]
            record("bwrap: namespaces, /usr only", await run([*minimal, "--", *bash]))
            record("bwrap: a job's whole option set", await run([bwrap, *full, "--", *bash]))
            launch = executor.launch(spec)
            record(
                "+ aicd's launch handshake (what a job gets)",
                await run(launch.argv, dict(launch.env), launch),
            )
            if old_cgroups is not None and prlimit is not None:
                cgroup = old_cgroups.root / "old-chain"
                cgroup.mkdir()
                (cgroup / "pids.max").write_text(str(limits.processes))
                chain = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(cgroup / "cgroup.procs")]
                argv = [*chain, prlimit, *_prlimit_args(limits), bwrap, *full, "--", *bash]
                record("previous chain: sh + new cgroup + prlimit(1) + bwrap", await run(argv))
                for _attempt in range(100):
                    try:
                        cgroup.rmdir()
                        break
                    except OSError:
                        await asyncio.sleep(0.01)
    finally:
        await executor.close()
        if old_cgroups is not None:
            old_cgroups.close()
    return {k: v for k, v in out.items() if v}, {k: v for k, v in cpu.items() if v}


def _prlimit_args(limits: SandboxLimits) -> list[str]:
    """The previous chain's prlimit(1) options."""
    import resource

    names = {
        resource.RLIMIT_CORE: "core",
        resource.RLIMIT_NPROC: "nproc",
        resource.RLIMIT_NOFILE: "nofile",
        resource.RLIMIT_AS: "as",
        resource.RLIMIT_CPU: "cpu",
    }
    return [f"--{names[kind]}={value}" for kind, value in _rlimits(limits)]


LAYERS = (
    "bash",
    "bwrap: namespaces, /usr only",
    "bwrap: a job's whole option set",
    "+ aicd's launch handshake (what a job gets)",
    "previous chain: sh + new cgroup + prlimit(1) + bwrap",
)


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
            time.sleep(SETTLE_S)
    return out


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def ms(value: float) -> str:
    return f"{value * 1000:.1f}"


def table(
    results: dict[str, dict[str, list[float]]],
    spawn: dict[str, list[float]],
    count: int,
    cpu: dict[str, dict[str, list[float]]],
) -> list[str]:
    lines = [
        "| jobs | runs | plain median (ms) | plain p90 | sandboxed median (ms) | sandboxed p90 "
        "| sandbox cost per job (ms) | plain CPU per job (ms) | sandboxed CPU per job (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def cpu_ms(values: list[float]) -> str:
        return ms(statistics.median(values)) if values else "n/a"

    for kind, both in results.items():
        diffs = [b - a for a, b in zip(both["plain"], both["sandboxed"], strict=True)]
        used = cpu.get(kind, {})
        lines.append(
            f"| {kind} | {count} | {ms(statistics.median(both['plain']))} | {ms(p90(both['plain']))} | "
            f"{ms(statistics.median(both['sandboxed']))} | {ms(p90(both['sandboxed']))} | "
            f"{ms(statistics.median(diffs))} | {cpu_ms(used.get('plain', []))} | "
            f"{cpu_ms(used.get('sandboxed', []))} |"
        )
    diffs = [b - a for a, b in zip(spawn["bash"], spawn["bwrap + bash"], strict=True)]
    lines.append(
        f"| spawn only (no aicd) | {len(spawn['bash'])} | {ms(statistics.median(spawn['bash']))} | "
        f"{ms(p90(spawn['bash']))} | {ms(statistics.median(spawn['bwrap + bash']))} | "
        f"{ms(p90(spawn['bwrap + bash']))} | {ms(statistics.median(diffs))} | n/a | n/a |"
    )
    return lines


def layer_table(layers: dict[str, list[float]], cpu: dict[str, list[float]]) -> list[str]:
    lines = [
        "| launch chain | runs | median (ms) | p90 | added to the line above (ms) | CPU (ms) |",
        "|---|---|---|---|---|---|",
    ]
    previous: float | None = None
    for name, values in layers.items():
        median = statistics.median(values)
        added = "" if previous is None else ms(median - previous)
        if name.startswith("previous chain"):
            added = f"{ms(median - statistics.median(layers[LAYERS[2]]))} (vs whole option set)"
        used = ms(statistics.median(cpu[name])) if cpu.get(name) else "n/a"
        lines.append(f"| {name} | {len(values)} | {ms(median)} | {ms(p90(values))} | {added} | {used} |")
        previous = median
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
    global METER
    # `python` in a job is this Python in both executors (the sandbox puts its bin first on PATH;
    # a plain job would otherwise find whatever the shell's PATH has first, e.g. a pyenv shim)
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.prefix) / "bin"), os.environ.get("PATH", "")])
    load_before = os.getloadavg()
    METER = CpuMeter()
    try:
        with tempfile.TemporaryDirectory(prefix="aicd-bench-sandbox-") as tmp:
            root = Path(tmp)
            repo = make_repo(root)
            results, cpu = asyncio.run(measure(repo, root, args.jobs))
            spawn = spawn_times(args.jobs, root)
            layers, layers_cpu = asyncio.run(layer_times(args.jobs, root, repo))
    finally:
        METER.close()
    load_after = os.getloadavg()
    cost = max(
        statistics.median([b - a for a, b in zip(both["plain"], both["sandboxed"], strict=True)])
        for kind, both in results.items()
        if "no pids cgroup" not in kind  # not what a job gets by default
    )
    rows = table(results, spawn, args.jobs, cpu)
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
        *layer_table(layers, layers_cpu),
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
