"""benchmarks/scale.py end to end at tiny sizes: real repos, real aicd, every run checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aicd.executors.sandbox import probe

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "scale.py"


@pytest.mark.slow
def test_scale_benchmark_measures_lint_and_run_per_size(tmp_path: Path) -> None:
    out = tmp_path / "raw.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--sizes",
            "10,100",
            "--repeat",
            "1",
            "--untracked",
            "2",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "load average before:" in proc.stdout and "target linear" in proc.stdout
    rows = json.loads(out.read_text())["rows"]
    seen = {(r["shape"], r["jobs"], r["step"]) for r in rows}
    # `aicd run --isolate` rows where the sandbox runs (bwrap comes with aicd on Linux), else said why
    steps = ("lint", "run", "isolate") if probe().ok else ("lint", "run")
    if not probe().ok:
        assert "no isolate rows:" in proc.stdout
    assert seen == {(s, n, k) for s in ("independent", "dag") for n in (10, 100) for k in steps}
    for row in rows:
        assert not row["errors"]
        assert row["wall_s"] > 0 and row["ms_per_job"] > 0 and row["rss_mb"] > 10
        assert (row["isolate_extra_ms_per_job"] is not None) == (row["step"] == "isolate")
        assert row["load"] >= 0
    assert all(r["vs_100"] == 1.0 for r in rows if r["jobs"] == 100)
