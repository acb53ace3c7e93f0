"""benchmarks/router.py end to end at a tiny size: real service, real router, real load tool.

With wrk and HAProxy installed (Debian: apt-get install -y wrk haproxy) it runs them; without,
the script's Python load generator and no haproxy column: nothing here needs them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "router.py"


def test_quick_benchmark_measures_every_path_without_a_failed_request(tmp_path: Path) -> None:
    out = tmp_path / "router.md"
    args = ["--quick", "--duration", "1", "--connections", "8", "--output", str(out)]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| fast")]
    paths = [cells[1].strip() for cells in rows]
    expected = ["direct", "aicd-asyncio", "aicd-py", "aicd-noid", "aicd", "aicd-mirror"] + (
        ["haproxy"] if shutil.which("haproxy") else []
    )
    assert paths == expected
    for cells in rows:
        rps, p50, cpu, failed = float(cells[2]), float(cells[3]), float(cells[5]), int(cells[8])
        assert rps > 50 and p50 > 0 and cpu >= 0 and failed == 0
    assert "the router adds" in done.stdout
    assert "request ids cost" in done.stdout
    assert "against asyncio's loop" in done.stdout
    assert "native data plane against its Python path" in done.stdout
    assert "mirroring every request costs users" in done.stdout
    if not shutil.which("wrk"):
        assert "Python asyncio load generator" in out.read_text()
    assert out.read_text().startswith("# Router benchmark")
