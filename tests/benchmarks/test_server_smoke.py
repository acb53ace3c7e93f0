"""benchmarks/server.py end to end at tiny sizes: a real server, real pushes, real pipelines."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from aicd_testing import clean_env

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "server.py"


def test_the_server_benchmark_measures_and_prints_its_table(tmp_path: Path) -> None:
    out = tmp_path / "server.md"
    sizes = ["--pushes", "3", "--pipelines", "2", "--backends", "sqlite", "--no-peer"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *sizes, "--output", str(out)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = out.read_text()
    webhook = re.search(r"^\| sqlite \| (\d+) ms \| (\d+) ms \| (\d+) ms \| (\d+) ms \|", text, re.M)
    assert webhook, text
    median, p99, low, high = (int(x) for x in webhook.groups())
    assert 0 < low <= median <= p99 <= high < 10_000
    concurrent = re.search(r"^\| aicd server, sqlite \| (\d+\.\d+) s \| yes \| 0 \|", text, re.M)
    assert concurrent, text
    assert 0 < float(concurrent.group(1)) < 120
    assert "skipped (--no-peer)" in text
