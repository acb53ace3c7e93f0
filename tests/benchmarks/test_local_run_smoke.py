"""benchmarks/local_run.py end to end at tiny sizes: real repos, real aicd, real peers."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "local_run.py"
NUMBER = re.compile(r"^\d+\.\d+$")


def load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_local_run", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is built
    spec.loader.exec_module(module)
    return module


def table_cells(stdout: str) -> dict[str, dict[str, str]]:
    """The markdown table as {pipeline title: {column: cell}}."""
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def test_generated_pipelines_are_valid_and_the_bash_floor_runs_them(tmp_path: Path) -> None:
    bench = load_module()
    for spec in (bench.three_job(), bench.dag(60), bench.independent(200)):
        doc = yaml.safe_load(spec.yaml())
        assert doc["stages"] == list(spec.stages)
        jobs = {k: v for k, v in doc.items() if k != "stages"}
        assert list(jobs) == [j.name for j in spec.jobs]
        order = {name: i for i, name in enumerate(jobs)}
        stage_of = {name: spec.stages.index(job["stage"]) for name, job in jobs.items()}
        for name, job in jobs.items():
            for need in job.get("needs", []):
                assert stage_of[need] < stage_of[name] and order[need] < order[name]
    dag = bench.dag(60)
    assert len(dag.jobs) == 60
    assert all(1 <= len(j.needs) <= 3 for j in dag.jobs if j.stage != "stage1")
    assert all(j.artifacts for j in dag.jobs)
    consumed = {n for j in dag.jobs for n in j.needs}
    assert len(consumed) > 30  # fan-out: most jobs feed a later one

    repo = bench.make_repo(tmp_path, dag)
    done = subprocess.run(["bash", str(tmp_path / "dag.bash")], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(list((repo / "out").iterdir())) == 60
    leftover = repo / ".gitlab-ci-local" / "builds" / "job" / ".git"  # a nested repo: git clean -f skips it
    leftover.mkdir(parents=True)
    (leftover / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".aicd").mkdir()
    (repo / ".aicd" / "aicd.db").write_text("")
    bench.reset(repo, keep=(".aicd",))
    assert (repo / ".aicd" / "aicd.db").exists()
    assert not (repo / "out").exists() and not (repo / ".gitlab-ci-local").exists()
    bench.reset(repo)
    assert sorted(p.name for p in repo.iterdir()) == [".git", ".gitlab-ci.yml", "README.md"]


class PeerMisbehaved(UserWarning):
    """gitlab-ci-local failed its runs: the benchmark reported it, and so does this test."""


def run_quick(tmp_path: Path, *flags: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], str]:
    raw_path = tmp_path / "raw.json"
    report = tmp_path / "report.md"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(raw_path), "--output", str(report), *flags],
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert raw_path.is_file(), proc.stdout + proc.stderr
    return proc, json.loads(raw_path.read_text()), report.read_text()


def check_quick_benchmark(
    proc: subprocess.CompletedProcess[str], raw: dict[str, Any], report: str, titles: list[str]
) -> bool:
    """What the benchmark must do whatever the peer does: aicd and bash measured, the peer's
    numbers or its failure reported. Returns whether the peer ran well (False: it misbehaved)."""
    peer = [p["runners"]["gcl"] for p in raw["pipelines"] if "gcl" in p["runners"]]
    peer_errors = [s["error"] for runner in peer for s in runner["samples"] if s["error"]]
    have_gcl, peer_ok = bool(peer), bool(peer) and not peer_errors
    # the peer's failure alone makes the script exit 1 (it reports it); ours never may
    assert proc.returncode == (0 if not peer_errors else 1), proc.stdout + proc.stderr
    table = table_cells(proc.stdout)
    assert list(table) == titles
    measured = ["bare bash (s)", "aicd (s)", "aicd no daemon (s)", "aicd warm (s)"]
    if peer_ok:
        measured.append("gitlab-ci-local (s)")
    elif not have_gcl:
        assert "npm i -g gitlab-ci-local@4.60.1" in proc.stdout
    else:
        assert "Failed runs:" in proc.stdout
        failed = proc.stdout.split("Failed runs:", 1)[1].strip().splitlines()
        assert failed and all(line.startswith("- gitlab-ci-local on ") for line in failed), failed
        assert {row["gitlab-ci-local (s)"] for row in table.values()} <= {"FAILED", "n/a"}
    for title, row in table.items():
        for column in measured:
            assert NUMBER.match(row[column]), f"{title} / {column}: {row[column]!r}"
            assert float(row[column]) > 0
        if peer_ok:
            assert re.match(r"^\d+\.\dx$", row["gcl / aicd"]), row
            assert re.match(r"^\d+\.\dx$", row["gcl / aicd warm"]), row
            assert re.match(r"^\d+\.\dx$", row["gcl / aicd no daemon"]), row
        assert re.match(r"^-?\d+(\.\d)?$", row["per job (ms)"]), row
    assert "Targets (measured):" in proc.stdout
    for pipeline in raw["pipelines"]:
        for key in ("bash", "aicd", "aicd_cold"):
            samples = pipeline["runners"][key]["samples"]
            assert len(samples) == 1 and samples[0]["error"] is None and samples[0]["wall_s"] > 0
    assert "Machine:" in report and "Versions:" in report
    # the run daemon the aicd runners used is stopped, its folder gone
    folder = raw["meta"]["daemon_dir"]
    assert not Path(folder).exists()
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline") if folder.encode() in _read(p)]
    return peer_ok or not have_gcl


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


@pytest.mark.slow
def test_quick_benchmark_prints_a_table_of_measured_numbers(tmp_path: Path) -> None:
    proc, raw, report = run_quick(tmp_path)
    if not check_quick_benchmark(proc, raw, report, ["3-job", "6-job DAG", "10 independent"]):
        failures = proc.stdout.split("Failed runs:", 1)[1].strip()
        warnings.warn(PeerMisbehaved(f"gitlab-ci-local on the PATH failed:\n{failures}"), stacklevel=1)
    assert "on 10 independent" in proc.stdout
    assert "| 3-job | 3 |" in report


def test_a_misbehaving_peer_is_reported_not_a_failure(tmp_path: Path) -> None:
    # A stand-in for a broken gitlab-ci-local (a real executable that fails its runs): what a
    # machine with a bad install of the peer has on its PATH.
    peer = tmp_path / "bin" / "gitlab-ci-local"
    peer.parent.mkdir()
    peer.write_text(
        '#!/bin/sh\n[ "$1" = --version ] && { echo 4.60.1; exit 0; }\necho "Error: boom" >&2\nexit 3\n'
    )
    peer.chmod(0o755)
    flags = ("--only", "3-job", "--gitlab-ci-local", str(peer))
    proc, raw, report = run_quick(tmp_path, *flags)
    assert check_quick_benchmark(proc, raw, report, ["3-job"]) is False
    assert "- gitlab-ci-local on 3-job: exit 3, 0/3 jobs passed: Error: boom" in proc.stdout
