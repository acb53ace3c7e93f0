"""`aicd run` that cannot finish: a full disk, SIGKILL. The run never stays `running` forever, and
what it left in `.aicd/builds` does not break later runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aicd.core.run_owner import STALE_LINE, RunOwner, reap_stale_runs
from aicd.store import open_store
from aicd_testing import AICD, aicd, clean_env, make_repo

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (needs root and mount; skipped elsewhere)."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def runs(project: Path) -> list[dict[str, object]]:
    proc = aicd(project, "runs", "--json")
    assert proc.returncode == 0, proc.stderr
    result: list[dict[str, object]] = json.loads(proc.stdout)
    return result


def test_a_full_disk_fails_the_run_clearly_and_later_runs_work(small_disk: Path) -> None:
    project = make_repo(
        small_disk / "p",
        {".gitlab-ci.yml": "build:\n  script:\n    - echo built > out.txt\n    - cat out.txt\n"},
    )
    (project / "data.bin").write_bytes(os.urandom(700_000))  # the workspace copies do not fit
    proc = aicd(project, "run", "--untracked")  # untracked: data.bin goes into the workspace
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "No space left on device" in proc.stdout + proc.stderr or "disk is full" in proc.stderr
    (run,) = runs(project)
    assert run["status"] == "failed"  # was: running, forever
    assert not (project / ".aicd" / "builds" / "1").exists()  # the half-written workspace is gone
    assert list((project / ".aicd" / "running").iterdir()) == []
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
    again = aicd(project, "run")
    assert again.returncode == 0, again.stdout + again.stderr
    assert [r["status"] for r in runs(project)] == ["success", "failed"]


def test_sigkill_of_aicd_run_is_marked_failed_by_the_next_command(tmp_path: Path) -> None:
    pipeline = (
        "stages: [one, two]\n"
        "slow:\n  stage: one\n  script:\n    - echo $$ > ../../../shell.pid\n    - sleep 300\n"
        "later:\n  stage: two\n  script: [echo never]\n"
    )
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": pipeline})
    pid_file = project / ".aicd" / "shell.pid"
    proc = subprocess.Popen(
        [*AICD, "run"],
        cwd=project,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert proc.poll() is None and time.monotonic() < deadline, "the job did not start"
        time.sleep(0.05)
    shell = int(pid_file.read_text())
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert runs(project)[0]["status"] == "failed"  # `aicd runs` found the owner gone
    show = json.loads(aicd(project, "show", "1", "--json").stdout)
    jobs = {j["name"]: j for j in show["jobs"]}
    assert jobs["slow"]["status"] == "failed" and jobs["slow"]["failure_reason"] == "runner_system_failure"
    assert jobs["later"]["status"] == "skipped"
    assert "ended before the run did" in show["pipeline"]["error"]
    assert STALE_LINE in Path(jobs["slow"]["log_path"]).read_text()
    assert not (project / ".aicd" / "builds" / "1").exists()
    assert list((project / ".aicd" / "snapshots").iterdir()) == []
    deadline = time.monotonic() + 10  # the job's shell, left behind, was killed

    def alive(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    while alive(shell):
        assert time.monotonic() < deadline, "the job's shell survived"
        time.sleep(0.05)
    proc2 = aicd(project, "run", "later")
    assert proc2.returncode == 0, proc2.stdout + proc2.stderr
    assert [r["status"] for r in runs(project)] == ["success", "failed"]


def test_a_run_whose_owner_holds_its_lock_is_left_alone_even_with_a_reused_pid(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = open_store(f"sqlite:///{tmp_path / 'aicd.db'}")
    try:
        live = store.create_pipeline(
            project_dir=str(tmp_path), ref="main", sha="a" * 40, source="push", file=".gitlab-ci.yml",
            run_dir_root=str(home / "runs"),
        )  # fmt: skip
        dead = store.create_pipeline(
            project_dir=str(tmp_path), ref="main", sha="b" * 40, source="push", file=".gitlab-ci.yml",
            run_dir_root=str(home / "runs"),
        )  # fmt: skip
        for record in (live, dead):
            store.update_pipeline(record.id, status="running")
        owner = RunOwner.claim(home)  # held by this (living) process
        owner.bind(live.id)
        gone = RunOwner.claim(home)
        gone.bind(dead.id)
        assert gone.handle is not None
        gone.handle.close()  # as if its process died; the pid in the file is ours: a "reused" pid
        assert reap_stale_runs(store, home) == [dead.id]
        assert store.get_pipeline(live.id).status == "running"
        assert store.get_pipeline(dead.id).status == "failed"
        owner.release()
        assert reap_stale_runs(store, home) == []
        assert store.get_pipeline(live.id).status == "running"  # released: recorded by its owner
    finally:
        store.close()
