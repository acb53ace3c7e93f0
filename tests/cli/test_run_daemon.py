"""The run daemon (aicd.cli.daemon): the `aicd` program hands `aicd run` to a resident process.

Real processes throughout: the installed `aicd` script (the daemon is used by that program, never
by `python -m aicd.cli.main`), real git repositories, a real daemon in a private folder per test,
stopped at the end. What a run does must not depend on whether the daemon ran it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aicd.cli.daemon import client
from aicd.cli.daemon.server import changed, module_files, parse_request
from aicd_testing import clean_env, make_repo, processes_with

AICD_SCRIPT = Path(sys.executable).with_name("aicd")

PIPELINE = """\
stages: [one, two]
first:
  stage: one
  script:
    - echo "var=$MY_VAR pwd=$PWD"
    - umask
    - echo made > out.txt
  artifacts:
    paths: [out.txt]
second:
  stage: two
  script:
    - cat out.txt
"""


@pytest.fixture
def daemon_env() -> Iterator[dict[str, str]]:
    assert AICD_SCRIPT.is_file(), "the aicd script (pip install -e .) is the program that uses the daemon"
    folder = tempfile.mkdtemp(prefix="aicdd-", dir="/tmp")  # short: a socket path has 107 bytes
    env = clean_env()
    env.update(AICD_DAEMON="on", AICD_DAEMON_DIR=folder, AICD_DAEMON_IDLE="120")
    try:
        yield env
    finally:
        subprocess.run([str(AICD_SCRIPT), "daemon", "stop"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def run(cwd: Path, env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AICD_SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def status(env: dict[str, str]) -> dict[str, object]:
    out = run(Path("/"), env, "daemon", "status", "--json")
    assert out.returncode == 0, out.stderr
    info: dict[str, object] = json.loads(out.stdout)
    return info


def comparable(result: dict[str, object]) -> object:
    """A run's JSON without what differs between any two runs (ids, times, durations)."""
    jobs = result["jobs"]
    assert isinstance(jobs, list)
    return [(j["name"], j["stage"], j["status"], j.get("exit_code")) for j in jobs]


def test_a_run_in_the_daemon_is_the_run_without_it(tmp_path: Path, daemon_env: dict[str, str]) -> None:
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": PIPELINE})
    cold_env = {**daemon_env, "AICD_DAEMON": "off", "MY_VAR": "cold"}
    cold = run(project, cold_env, "run", "--json")
    assert cold.returncode == 0, cold.stderr
    assert status(daemon_env)["running"] is False  # nothing started one
    outputs = []
    for i in range(3):  # the first starts the daemon, the next are served by it
        env = {**daemon_env, "MY_VAR": f"warm{i}"}
        done = subprocess.run(
            [str(AICD_SCRIPT), "run", "--json"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=lambda: os.umask(0o027),
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done)
        # the job saw this client's environment, working folder and umask, not the daemon's
        assert f"var=warm{i} pwd=" in done.stderr and "0027" in done.stderr, done.stderr
    info = status(daemon_env)
    assert info["running"] is True and info["served"] == 3, info
    assert [comparable(json.loads(o.stdout)) for o in outputs] == [comparable(json.loads(cold.stdout))] * 3
    assert "var=cold" in cold.stderr
    runs = run(project, cold_env, "runs", "--json")
    assert len(json.loads(runs.stdout)) == 4  # every run recorded in the project's store


def test_exit_codes_errors_and_help_are_the_programs(tmp_path: Path, daemon_env: dict[str, str]) -> None:
    failing = make_repo(tmp_path / "f", {".gitlab-ci.yml": "bad:\n  script: [exit 3]\n"})
    broken = make_repo(tmp_path / "b", {".gitlab-ci.yml": "job:\n  script: [echo\n"})
    cases = [
        (failing, ("run", "--json")),
        (broken, ("run",)),
        (failing, ("run", "--help")),
        (failing, ("run", "--no-such-option")),
        (tmp_path, ("run",)),  # no pipeline file
    ]
    for where, args in cases:
        cold = run(where, {**daemon_env, "AICD_DAEMON": "off"}, *args)
        warm = run(where, daemon_env, *args)
        assert warm.returncode == cold.returncode, (args, warm.stderr, cold.stderr)
        assert "Traceback" not in warm.stderr
        if args != ("run", "--json"):
            assert warm.stdout == cold.stdout and warm.stderr == cold.stderr, args
    assert status(daemon_env)["served"] == len(cases)


def _start_sleeping_run(project: Path, env: dict[str, str], marker: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [str(AICD_SCRIPT), "run", "--json"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not processes_with(f"{marker}-fg"):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.05)
    return proc


def _sleeping_project(tmp_path: Path, marker: str) -> Path:
    pipeline = f"job:\n  script:\n    - bash -c 'exec -a {marker}-fg sleep 300'\n"
    return make_repo(tmp_path / "p", {".gitlab-ci.yml": pipeline})


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_reach_the_run(tmp_path: Path, daemon_env: dict[str, str], sig: signal.Signals) -> None:
    marker = f"aicdmark{uuid.uuid4().hex[:10]}"
    project = _sleeping_project(tmp_path, marker)
    proc = _start_sleeping_run(project, daemon_env, marker)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == (130 if sig == signal.SIGINT else 143), stderr  # as without the daemon
    assert json.loads(stdout)["pipeline"]["status"] == "canceled"
    deadline = time.monotonic() + 10
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == []


def test_a_client_killed_outright_stops_its_run(tmp_path: Path, daemon_env: dict[str, str]) -> None:
    marker = f"aicdmark{uuid.uuid4().hex[:10]}"
    project = _sleeping_project(tmp_path, marker)
    proc = _start_sleeping_run(project, daemon_env, marker)
    proc.kill()  # SIGKILL: nothing forwarded; the daemon sees the client go
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == []
    deadline = time.monotonic() + 30
    while status(daemon_env)["runs"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status(daemon_env)["runs"] == 0
    runs = run(project, {**daemon_env, "AICD_DAEMON": "off"}, "runs", "--json")
    assert json.loads(runs.stdout)[0]["status"] == "canceled"


def test_two_runs_at_once(tmp_path: Path, daemon_env: dict[str, str]) -> None:
    projects = [make_repo(tmp_path / f"p{i}", {".gitlab-ci.yml": PIPELINE}) for i in range(2)]
    assert run(projects[0], daemon_env, "run", "--json").returncode == 0  # the daemon is up
    procs = [
        subprocess.Popen(
            [str(AICD_SCRIPT), "run", "--json"],
            cwd=p,
            env={**daemon_env, "MY_VAR": p.name},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in projects
    ]
    for p, proc in zip(projects, procs, strict=True):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert f"var={p.name} " in err
        assert json.loads(out)["pipeline"]["status"] == "success"
    assert status(daemon_env)["served"] == 3


def test_stop_idle_and_status(tmp_path: Path, daemon_env: dict[str, str]) -> None:
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": PIPELINE})
    env = {**daemon_env, "AICD_DAEMON_IDLE": "1"}
    assert run(project, env, "run", "--json").returncode == 0
    deadline = time.monotonic() + 60  # leaves after 1 s without a run
    while status(env)["running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status(env)["running"] is False
    assert not list(Path(env["AICD_DAEMON_DIR"]).glob("*.sock"))
    assert run(project, daemon_env, "run", "--json").returncode == 0
    assert status(daemon_env)["running"] is True
    stopped = run(Path("/"), daemon_env, "daemon", "stop")
    assert "stopped" in stopped.stdout, stopped.stdout
    assert status(daemon_env)["running"] is False
    assert "no run daemon" in run(Path("/"), daemon_env, "daemon", "status").stdout


def test_off_in_ci_and_when_asked(tmp_path: Path, daemon_env: dict[str, str]) -> None:
    assert client.enabled({}) is True
    assert client.enabled({"CI": "true"}) is False
    assert client.enabled({"CI": "true", "AICD_DAEMON": "on"}) is True
    assert client.enabled({"AICD_DAEMON": "off"}) is False
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": PIPELINE})
    env = {k: v for k, v in daemon_env.items() if k != "AICD_DAEMON"}
    assert run(project, {**env, "CI": "true"}, "run", "--json").returncode == 0
    assert status(daemon_env)["running"] is False  # nothing started in CI


def test_a_folder_not_private_is_not_used(tmp_path: Path, daemon_env: dict[str, str]) -> None:
    shared = Path(tempfile.mkdtemp(prefix="aicdd-", dir="/tmp"))
    try:
        shared.chmod(0o755)  # others could put a socket of theirs here
        env = {**daemon_env, "AICD_DAEMON_DIR": str(shared)}
        assert client.runtime_dir(env) is None
        project = make_repo(tmp_path / "p", {".gitlab-ci.yml": PIPELINE})
        done = run(project, env, "run", "--json")
        assert done.returncode == 0, done.stderr  # run here instead
        assert list(shared.iterdir()) == []
        if os.getuid() == 0:  # owned by someone else, even private: refused
            shared.chmod(0o700)
            os.chown(shared, 65534, 65534)
            assert client.runtime_dir(env) is None
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_a_changed_installation_is_seen(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("x = 1\n")
    files = {str(module): (module.stat().st_mtime_ns, module.stat().st_size)}
    assert changed(files) == []
    module.write_text("x = 22\n")
    assert changed(files) == [str(module)]
    module.unlink()
    assert changed(files) == [str(module)]
    assert any(path.endswith("server.py") for path in module_files())


def test_requests_are_read_strictly() -> None:
    body = b"\0".join([b"key", b"/tmp", b"22", b"2", b"aicd", b"run", b"A=1", b"B=x=y"])
    request = parse_request(body)
    assert (
        request.argv == ["aicd", "run"]
        and request.env == {b"A": b"1", b"B": b"x=y"}
        and request.umask == 0o22
    )
    for bad in (
        b"key\0/tmp",
        b"key\0/tmp\x0022\x005\0aicd",
        b"key\0/tmp\x0022\x001\0aicd\0NOEQUALS",
        b"k\0/\0zz\x001\0a",
    ):
        with pytest.raises(ValueError):
            parse_request(bad)


def test_the_hand_over_loads_almost_nothing() -> None:
    """What `aicd run` imports before the daemon takes over: the point is the start-up time."""
    code = "import sys; import aicd.cli.main, aicd.cli.daemon.client; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=clean_env()
    )
    loaded = set(out.stdout.split())
    for heavy in (
        "asyncio",
        "pathlib",
        "re",
        "typing",
        "dataclasses",
        "enum",
        "socket",
        "signal",
        "yaml",
        "click",
    ):
        assert heavy not in loaded, heavy
    assert {"aicd", "aicd.cli.daemon.client", "_socket", "_signal"} <= loaded
    ours = sorted(m for m in loaded if m.startswith("aicd"))
    assert ours == ["aicd", "aicd.cli", "aicd.cli.daemon", "aicd.cli.daemon.client", "aicd.cli.main"], ours


def test_a_daemon_that_cannot_start_does_not_hold_up_the_run(
    tmp_path: Path, daemon_env: dict[str, str]
) -> None:
    socket_path = status(daemon_env)["socket"]
    assert isinstance(socket_path, str)
    os.mkdir(socket_path)  # a daemon cannot listen there: it exits before it listens
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": PIPELINE})
    began = time.monotonic()
    done = run(project, daemon_env, "run", "--json")
    took = time.monotonic() - began
    assert done.returncode == 0, done.stderr  # run here instead
    assert json.loads(done.stdout)["pipeline"]["status"] == "success"
    # the client saw its daemon exit: it waited seconds for another one, not START_TIMEOUT
    assert took < client.START_TIMEOUT, took
    assert status(daemon_env)["running"] is False


def test_a_deleted_folder_and_a_closed_stream_as_without_the_daemon(
    tmp_path: Path, daemon_env: dict[str, str]
) -> None:
    project = make_repo(tmp_path / "p", {".gitlab-ci.yml": PIPELINE})
    gone = tmp_path / "gone"
    for setting in ("on", "off"):
        env = {**daemon_env, "AICD_DAEMON": setting, "AICD": str(AICD_SCRIPT), "GONE": str(gone)}
        gone.mkdir()
        # the working folder deleted under the command: one clear error, no traceback
        done = subprocess.run(
            ["bash", "-c", 'cd "$GONE" && rmdir "$GONE" && exec "$AICD" run'],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1, done.stderr
        assert (
            "change to the project's folder or give --cwd" in done.stderr and "Traceback" not in done.stderr
        )
        # stdout closed: the daemon is not handed a socket as the run's stdout
        closed = subprocess.run(
            ["bash", "-c", 'exec "$AICD" run --json >&-'],
            cwd=project,
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert closed.returncode == 1, (setting, closed.stderr)
    assert status(daemon_env).get("served", 0) == 0  # nothing here was the daemon's to run
