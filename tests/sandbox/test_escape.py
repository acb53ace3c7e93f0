"""The escape suite: real jobs on the real `aicd server` try to get out of the sandbox.

One server per database (SQLite, PostgreSQL) runs two projects. The victim's
job holds a secret in its workspace and waits; meanwhile the attacker's
pipeline runs one job per attempt: read the server's secret key, admin token
and database, another project's workspace, the user's home; signal and
ptrace the server; write outside the workspace; a fork bomb; a memory hog;
processes left behind; the API with the network off. Every attempt must fail
or be contained: the jobs print ``REFUSED: <what>: <the system's answer>``
and end successfully, ``ESCAPED`` fails them. After each case the server
still answers its health check, and files it holds are unchanged.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import jobs_of, new_project, trigger, wait_log, wait_pipeline
from serverproc import ServerProc, json_of

from aicd.executors.sandbox import probe, python_paths
from pg_testing import fresh_database

PROBE = probe()
pytestmark = pytest.mark.skipif(not PROBE.ok, reason=f"no sandbox here: {PROBE.reason}")
# A fork bomb is only run where it is contained: a pids cgroup, or RLIMIT_NPROC (not applied to root).
BOMB_CONTAINED = PROBE.pids_cgroup or os.geteuid() != 0

TRY = r"""
try_it() {
  what="$1"; shift
  if out=$("$@" 2>&1); then echo "ESCAPED: $what"; printf '%s\n' "$out" | head -c 300; exit 1; fi
  echo "REFUSED: $what: $(printf '%s\n' "$out" | tail -n 1)"
}
""".strip()

ATTACKER = f"""
default:
  timeout: 3m
  before_script:
    - |
{chr(10).join("      " + line for line in TRY.splitlines())}

read-server-files:
  script:
    - try_it "read secret.key" cat "$SERVER_HOME/secret.key"
    - try_it "read admin-token" cat "$SERVER_HOME/admin-token"
    - try_it "read the database file" cat "$SERVER_HOME/aicd.db"
    - try_it "read the objects" ls "$SERVER_HOME/objects"
    - try_it "read the mirrors" ls "$SERVER_HOME/mirrors"
    - try_it "see aicd's credentials" sh -c 'env | grep -E "^AICD_(HOME|DATABASE_URL|SECRET_KEY|TOKEN)="'
    - try_it "read /etc/shadow" grep -q . /etc/shadow
    - echo "home holds:$(ls -A "$SERVER_HOME" | tr '\\n' ' ')."

other-workspace:
  script:
    - try_it "read the victim's workspace" cat "$VICTIM_WS/secret.txt"
    - try_it "list the victim's pipeline" ls "$(dirname "$VICTIM_WS")"
    - echo "builds holds:$(ls -A "$SERVER_HOME/builds" | tr '\\n' ' ')."

user-home:
  script:
    - try_it "read the user's .gitconfig" cat "$USER_HOME/.gitconfig"
    - try_it "read the user's .profile" cat "$USER_HOME/.profile"
    - echo "user home holds:$(ls -A "$USER_HOME" 2>/dev/null | tr '\\n' ' ')."
    - echo "HOME is $HOME"

signal-server:
  script:
    - try_it "see the server's process" test -e "/proc/$SERVER_PID"
    - try_it "signal the server" kill -0 "$SERVER_PID"
    - try_it "kill the server" kill -TERM "$SERVER_PID"
    - >-
      try_it "ptrace the server" python -c "import ctypes, os, sys;
      libc = ctypes.CDLL(None, use_errno=True);
      r = libc.ptrace(16, int(sys.argv[1]), 0, 0);
      print(os.strerror(ctypes.get_errno()));
      sys.exit(0 if r == 0 else 1)" "$SERVER_PID"
    - echo "processes seen:$(ls /proc | grep -c '^[0-9]')."

write-outside:
  script:
    - try_it "write into /usr" touch /usr/pwned
    - try_it "write into /etc" touch /etc/pwned
    - try_it "write into the Python installation" touch "$PYTHON_PREFIX/pwned"
    # in a private /tmp these "work" where the paths are under /tmp: the test checks the real files
    - touch "$SERVER_HOME/pwned" "$REPO_DIR/pwned" || true
    - try_it "write to /" touch /pwned
    - touch "$CI_PROJECT_DIR/inside" && echo "the workspace is writable"

memory-hog:
  script:
    - try_it "allocate 4 GiB" python -c "b = b'x' * (4 * 1024**3); print(len(b))"
    - echo "the job goes on"

leave-processes:
  script:
    - bash -c 'exec -a "$MARKER" sleep 600' &
    - setsid nohup bash -c 'exec -a "$MARKER" sleep 600' > /dev/null 2>&1 &
    - sleep 0.5
    - echo "left processes behind"

report-links:
  # reports are read by the server, outside the sandbox: links to its files must not be followed
  script:
    - ln -s "$SERVER_HOME/secret.key" key.env
    - ln -s "$SERVER_HOME/admin-token" token.env
    - ln -s "$SERVER_HOME/secret.key" metrics.txt
    - ln -s /etc/fonts/fonts.conf junit.xml
    - echo "links made"
  artifacts:
    reports:
      dotenv: [key.env, token.env]
      metrics: metrics.txt
      junit: junit.xml

after-report-links:
  needs: [report-links]
  script:
    - env | sort

network-off:
  variables:
    AICD_JOB_NETWORK: none
  script:
    - >-
      try_it "reach the server's API" python -c "import sys, urllib.request;
      urllib.request.urlopen(sys.argv[1], timeout=5)" "http://127.0.0.1:$SERVER_PORT/api/v1/health"

network-on:
  script:
    - >-
      python -c "import sys, urllib.request;
      print('reached the API:', urllib.request.urlopen(sys.argv[1], timeout=10).status)"
      "http://127.0.0.1:$SERVER_PORT/api/v1/health"
"""

BOMB = """
fork-bomb:
  script:
    - echo "starting a fork bomb"
    - timeout -s KILL 8 bash -c 'bomb() { bomb | bomb & }; bomb' > /dev/null 2>&1 || true
    - echo "contained, the job goes on"
"""

VICTIM = """
holder:
  timeout: 5m
  script:
    - echo "$VICTIM_SECRET" > secret.txt
    - echo "secret written"
    - sleep 240
"""


@dataclass
class Attack:
    server: ServerProc
    pipeline: dict[str, Any]
    jobs: dict[str, dict[str, Any]]
    logs: dict[str, str]
    victim_secret: str
    marker: str
    victim_ws: Path
    repo: Path
    home_files: dict[str, bytes]  # the server's files before the attack


def _healthy(server: ServerProc) -> None:
    with server.client("") as anonymous:
        response = anonymous.get("/health")
    assert response.status_code == 200, response.text
    assert json_of(response)["sandbox"] == "on"


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/cmdline").read_bytes().startswith(marker.encode()):
                    found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def attack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attack]:
    tmp = tmp_path_factory.mktemp(f"escape-{request.param}")
    with _database(request.param, tmp) as url:
        env = {
            "AICD_CONCURRENCY": "6",
            "AICD_JOB_MAX_PROCESSES": "64",
            "AICD_JOB_MAX_MEMORY_MB": "1024",
        }
        server = ServerProc(tmp / "home", url, poll=False, env=env).start()
        try:
            yield _run_attack(server, tmp)
        finally:
            server.stop(check=False)


@contextlib.contextmanager
def _database(backend: str, tmp: Path) -> Iterator[str]:
    """A database URL: a SQLite file in the home, or a fresh PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'home' / 'aicd.db'}"
        return
    with fresh_database("aicd_esc") as engine:
        yield engine.url.render_as_string(hide_password=False)


def _run_attack(server: ServerProc, tmp: Path) -> Attack:
    import sys

    _healthy(server)
    victim_secret = f"victim-secret-{secrets.token_hex(8)}"
    marker = f"aicd-escape-leftover-{secrets.token_hex(4)}"
    new_project(server, tmp, {".gitlab-ci.yml": VICTIM}, name="victim")
    repo = new_project(
        server, tmp, {".gitlab-ci.yml": ATTACKER + (BOMB if BOMB_CONTAINED else "")}, "attacker"
    )
    home = server.home
    home_files = {
        name: (home / name).read_bytes() for name in ("secret.key", "admin-token") if (home / name).exists()
    }
    with server.client() as admin:
        victim = trigger(admin, "victim", variables=[{"key": "VICTIM_SECRET", "value": victim_secret}])
        deadline = time.monotonic() + 60
        while "holder" not in jobs_of(admin, "victim", victim["id"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        holder = jobs_of(admin, "victim", victim["id"])["holder"]
        wait_log(admin, "victim", holder["id"], "secret written", timeout=60)
        victim_ws = home / "builds" / str(victim["id"]) / "holder"
        assert (victim_ws / "secret.txt").read_text().strip() == victim_secret  # it is there to steal
        given = {
            "SERVER_HOME": str(home),
            "SERVER_PID": str(server.proc.pid if server.proc else 0),
            "SERVER_PORT": str(server.port),
            "USER_HOME": str(Path.home()),
            "VICTIM_WS": str(victim_ws),
            "REPO_DIR": str(repo),
            "PYTHON_PREFIX": sys.prefix,
            "MARKER": marker,
        }
        attacker = trigger(admin, "attacker", variables=[{"key": k, "value": v} for k, v in given.items()])
        done = wait_pipeline(admin, "attacker", attacker["id"], timeout=240)
        jobs = jobs_of(admin, "attacker", attacker["id"])
        logs = {
            name: admin.get(f"/projects/attacker/jobs/{job['id']}/log").text for name, job in jobs.items()
        }
        admin.post(f"/projects/victim/pipelines/{victim['id']}/cancel")
        wait_pipeline(admin, "victim", victim["id"], timeout=60)
    return Attack(server, done, jobs, logs, victim_secret, marker, victim_ws, repo, home_files)


def _refused(attack: Attack, job: str, *what: str) -> str:
    assert job in attack.logs, (attack.pipeline.get("error"), attack.pipeline.get("status"))
    log = attack.logs[job]
    assert "ESCAPED" not in log, log
    assert attack.jobs[job]["status"] == "success", log
    for item in what:
        assert f"REFUSED: {item}: " in log, log
    _healthy(attack.server)
    return log


def test_the_server_files_cannot_be_read(attack: Attack) -> None:
    log = _refused(
        attack,
        "read-server-files",
        "read secret.key",
        "read admin-token",
        "read the database file",
        "read the objects",
        "read the mirrors",
        "see aicd's credentials",
        "read /etc/shadow",
    )
    assert "REFUSED: read secret.key: cat: " in log and "No such file or directory" in log
    assert "home holds:builds ." in log  # only the mount point of its own workspace
    for name, content in attack.home_files.items():
        assert content.decode().strip() not in log
        assert (attack.server.home / name).read_bytes() == content


def test_another_projects_workspace_cannot_be_read(attack: Attack) -> None:
    log = _refused(attack, "other-workspace", "read the victim's workspace", "list the victim's pipeline")
    assert attack.victim_secret not in log
    own = str(attack.pipeline["id"])
    assert f"builds holds:{own} ." in log


def test_the_users_home_cannot_be_read(attack: Attack) -> None:
    log = _refused(attack, "user-home", "read the user's .gitconfig", "read the user's .profile")
    assert "HOME is /tmp/home" in log
    # only the mount points of the Python installation aicd runs from, if it lives there
    home = Path.home()
    allowed = {p.relative_to(home).parts[0] for p in python_paths(hidden=()) if home in p.parents}
    shown = log.rsplit("user home holds:", 1)[1].split(".\n")[0].split()
    assert set(shown) <= allowed, (shown, allowed)


def test_the_server_cannot_be_signalled_or_traced(attack: Attack) -> None:
    log = _refused(
        attack,
        "signal-server",
        "see the server's process",
        "signal the server",
        "kill the server",
        "ptrace the server",
    )
    assert "No such process" in log
    seen = int(log.rsplit("processes seen:", 1)[1].split(".")[0])
    assert seen < 10, log  # its own PID namespace: bwrap's init, bash, ls
    assert attack.server.proc is not None and attack.server.proc.poll() is None


def test_nothing_outside_the_workspace_can_be_written(attack: Attack) -> None:
    log = _refused(
        attack,
        "write-outside",
        "write into /usr",
        "write into /etc",
        "write into the Python installation",
        "write to /",
    )
    assert "Read-only file system" in log
    assert "the workspace is writable" in log
    assert not (attack.server.home / "pwned").exists()
    assert not (attack.repo / "pwned").exists()
    assert not Path("/usr/pwned").exists() and not Path("/etc/pwned").exists()


def test_a_memory_hog_is_stopped(attack: Attack) -> None:
    log = _refused(attack, "memory-hog", "allocate 4 GiB")
    assert "MemoryError" in log and "the job goes on" in log


@pytest.mark.skipif(not BOMB_CONTAINED, reason="no pids cgroup, and RLIMIT_NPROC does not apply to root")
def test_a_fork_bomb_is_contained(attack: Attack) -> None:
    log = _refused(attack, "fork-bomb")
    assert "contained, the job goes on" in log


def test_processes_left_behind_are_killed_when_the_job_ends(attack: Attack) -> None:
    _refused(attack, "leave-processes")
    assert "left processes behind" in attack.logs["leave-processes"]
    deadline = time.monotonic() + 15
    while _processes_with(attack.marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_with(attack.marker) == []


def test_reports_that_link_to_the_servers_files_are_not_read(attack: Attack) -> None:
    log = _refused(attack, "report-links")
    assert "links made" in log
    for name in ("key.env", "token.env", "metrics.txt", "junit.xml"):
        assert f"WARNING: {name}: a symbolic link" in log, log
    following = _refused(attack, "after-report-links")
    with attack.server.client() as admin:
        job = attack.jobs["report-links"]
        shown = [
            log,
            following,
            admin.get(f"/projects/attacker/jobs/{job['id']}").text,
            admin.get(f"/projects/attacker/pipelines/{attack.pipeline['id']}/test_report").text,
        ]
    for content in attack.home_files.values():
        secret = content.decode().strip()
        for part in (secret, secret.rstrip("=")):
            assert all(part not in text for text in shown)


def test_the_network_is_off_when_asked_and_on_by_default(attack: Attack) -> None:
    log = _refused(attack, "network-off", "reach the server's API")
    assert "network is off" in log
    assert "reached the API: 200" in attack.logs["network-on"]


def test_the_pipeline_ran_every_attempt(attack: Attack) -> None:
    expected = {
        "read-server-files",
        "other-workspace",
        "user-home",
        "signal-server",
        "write-outside",
        "memory-hog",
        "leave-processes",
        "report-links",
        "after-report-links",
        "network-off",
        "network-on",
    } | ({"fork-bomb"} if BOMB_CONTAINED else set())
    assert set(attack.jobs) == expected
    assert attack.pipeline["status"] == "success", {n: j["status"] for n, j in attack.jobs.items()}
    with attack.server.client() as admin:
        assert admin.get("/health").status_code == 200
