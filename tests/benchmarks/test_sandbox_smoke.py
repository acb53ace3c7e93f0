"""benchmarks/sandbox.py end to end at a tiny size: real jobs through both executors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from aicd.executors.sandbox import probe

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sandbox.py"
PROBE = probe()


@pytest.mark.skipif(not PROBE.ok, reason=PROBE.reason)
def test_the_benchmark_prints_a_table_of_measured_numbers(tmp_path: Path) -> None:
    report = tmp_path / "sandbox.md"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--jobs", "3", "--output", str(report)],
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tables = proc.stdout.split("\n\n")
    jobs, layers = (
        [line for line in t.splitlines() if line.startswith("| ") and "---" not in line]
        for t in (
            next(t for t in tables if "| jobs |" in t),
            next(t for t in tables if "| launch chain |" in t),
        )
    )
    assert [r.split("|")[1].strip() for r in jobs[1:]] == [
        "trivial",
        "python",
        "trivial, no pids cgroup",
        "spawn only (no aicd)",
    ]
    number = r"-?\d+\.\d"
    for row in jobs[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert all(re.fullmatch(number, c) for c in cells[2:7]), row
        assert all(re.fullmatch(f"{number}|n/a", c) for c in cells[7:]), row  # CPU: where cpuacct is writable
    names = [r.split("|")[1].strip() for r in layers[1:]]
    assert names[:4] == [
        "bash",
        "bwrap: namespaces, /usr only",
        "bwrap: a job's whole option set",
        "+ aicd's launch handshake (what a job gets)",
    ]
    for row in layers[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert re.fullmatch(number, cells[2]) and re.fullmatch(number, cells[3]), row
    assert "Load average" in proc.stdout and "Target: under 10 ms per job" in proc.stdout
    assert report.read_text() == proc.stdout.rstrip("\n") + "\n"
