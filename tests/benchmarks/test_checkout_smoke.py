"""benchmarks/checkout.py end to end at a tiny size: a real repository, every workspace checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "checkout.py"


def test_checkout_benchmark_measures_every_method(tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--files", "20", "--jobs", "2", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in out.read_text().splitlines() if line.startswith("| generated")]
    assert len(rows) == 2  # wall time, then CPU time
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    cpu = [float(c.strip()) for c in rows[1].strip("|").split("|")[1:]]
    assert len(cpu) == 5 and min(cpu[0], cpu[1], cpu[3], cpu[4]) > 0
    assert cells[1] == "21"  # 20 files and the CHANGES.txt its 29 later commits edit
    files, aicd, _difference, shared, local, setup = (float(c) for c in cells[2:])
    assert min(files, aicd, shared, local, setup) > 0
