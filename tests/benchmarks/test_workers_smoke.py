"""benchmarks/workers.py end to end at tiny sizes: a real server on PostgreSQL, RabbitMQ, one real worker."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from aicd_testing import clean_env

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "workers.py"


def test_the_workers_benchmark_measures_and_prints_its_table(tmp_path: Path) -> None:
    out = tmp_path / "workers.md"
    sizes = ["--jobs", "3", "--dag", "3", "--latency", "2", "--workers", "1"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *sizes, "--output", str(out)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=280,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = out.read_text()
    for label in ("in-process", "1 worker"):
        pattern = (
            rf"^\| {label} \| (\d+\.\d) s \| [\d.]+ \| [\d.]+ ms \| [\d.]+ ms \| (\d+\.\d) s \| [\d.]+ "
            r"\| (\d+) ms \| (\d+) ms \| yes \|"
        )
        row = re.search(pattern, text, re.M)
        assert row, text
        flat, dag, p50, p99 = float(row[1]), float(row[2]), int(row[3]), int(row[4])
        assert 0 < flat < 200 and 0 < dag < 200 and 0 <= p50 <= p99 < 60_000
    assert "ms of wall time per flat job" in text
