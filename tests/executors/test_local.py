"""LocalExecutor specifics: workspace, snapshot, git isolation, processes, files."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from aicd.errors import AicdError, ExecutorError
from aicd.executors import LocalExecutor as LazyLocalExecutor
from aicd.executors import local as local_mod
from aicd.executors import workspace as workspace_mod
from aicd.executors.base import ArtifactSource
from aicd.executors.local import LocalExecutor
from aicd.executors.workspace import slug
from aicd.pipeline.ir import Artifacts, Variable

from .contract import Ran, Runner, Session, git, make_job, make_project, processes_with, wait_for


def local_runner(project: Path, home: Path, run_dir: Path, commit: str | None = None) -> Runner:
    return Runner(lambda p, h: LocalExecutor(p, h, commit=commit), project, home, run_dir)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(
        tmp_path / "project",
        {
            "README.md": "committed\n",
            ".gitignore": "ignored.txt\nbuild/\n",
            "run.sh": "#!/bin/sh\necho run\n",
        },
    )


@pytest.fixture
def runner(project: Path, tmp_path: Path) -> Runner:
    # home inside the project, as `aicd run` has it by default
    return local_runner(project, project / ".aicd", tmp_path / "run")


def test_lazy_package_export() -> None:
    assert LazyLocalExecutor is LocalExecutor


def test_workspace_location_and_builds_dir(runner: Runner) -> None:
    ran = runner.one(make_job('echo "$CI_PROJECT_DIR"', 'echo "$CI_BUILDS_DIR"', name="test 1/2"))
    home = (runner.project / ".aicd").resolve()
    assert ran.out == [str(home / "builds" / "1" / slug("test 1/2")), str(home / "builds")]
    assert slug("build") == "build"
    assert slug("test 1/2") != slug("test-1/2")


def _worktree_state(project: Path) -> None:
    (project / "README.md").write_text("edited, not committed\n")
    (project / "untracked.txt").write_text("new\n")
    (project / "ignored.txt").write_text("ignored\n")
    (project / "build").mkdir()
    (project / "build" / "out.bin").write_text("x")
    (project / "run.sh").chmod(0o755)
    # another tool's state: an untracked folder holding nested git repositories
    nested = project / ".gitlab-ci-local" / "builds" / "job"
    nested.mkdir(parents=True)
    git(nested, "init", "-q")
    (nested / "big.bin").write_bytes(b"x" * 1000)


def test_snapshot_has_tracked_worktree_files_not_untracked_nor_ignored_nor_git(
    project: Path, runner: Runner
) -> None:
    """As GitLab and gitlab-ci-local: the tracked files, as they are in the working tree."""
    _worktree_state(project)
    ran = runner.one(
        make_job(
            "cat README.md",
            "test ! -e untracked.txt",
            "test ! -e .gitlab-ci-local",
            "test ! -e ignored.txt",
            "test ! -e build",
            "test ! -e .git",
            "test ! -e .aicd",
            "./run.sh",
        )
    )
    assert ran.outcome.status == "success", ran.lines
    assert ran.out == ["edited, not committed", "run"]


def test_untracked_files_only_when_asked(project: Path, tmp_path: Path) -> None:
    _worktree_state(project)
    runner = Runner(
        lambda p, h: LocalExecutor(p, h, untracked=True), project, project / ".aicd", tmp_path / "r"
    )
    ran = runner.one(
        make_job(
            "cat README.md untracked.txt",
            "test -f .gitlab-ci-local/builds/job/big.bin",
            "test ! -e .gitlab-ci-local/builds/job/.git",
            "test ! -e ignored.txt",
            "test ! -e build",
            "./run.sh",
        )
    )
    assert ran.outcome.status == "success", ran.lines
    assert ran.out == ["edited, not committed", "new", "run"]


def test_home_inside_the_project_under_another_name_is_left_out(project: Path, tmp_path: Path) -> None:
    runner = local_runner(project, project / "state", tmp_path / "run")
    ran = runner.one(make_job("test ! -e state"))
    assert ran.outcome.status == "success", ran.lines


def test_git_in_a_job_never_finds_the_users_repository(project: Path, runner: Runner) -> None:
    head = git(project, "rev-parse", "HEAD")
    ran = runner.one(
        make_job(
            "git rev-parse --show-toplevel 2>/dev/null && exit 1 || echo isolated",
            "git init -q . && git status --short | head -1",
        )
    )
    assert ran.outcome.status == "success", ran.lines
    assert ran.out[0] == "isolated"
    assert git(project, "rev-parse", "HEAD") == head
    assert git(project, "status", "--porcelain", "--untracked-files=no") == ""


def test_git_dir_of_the_runner_is_not_inherited(
    project: Path, runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_DIR", str(project / ".git"))
    ran = runner.one(make_job('test -z "$GIT_DIR"', "git rev-parse --git-dir && exit 1 || echo isolated"))
    assert ran.outcome.status == "success", ran.lines


def test_aicd_credentials_of_the_runner_are_not_inherited(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server's encryption key and an API token must not reach job scripts.
    monkeypatch.setenv("AICD_SECRET_KEY", "key-that-decrypts-every-secret")
    monkeypatch.setenv("AICD_TOKEN", "aicd_token_of_the_runner")
    monkeypatch.setenv("AICD_SOMETHING_ELSE", "kept")
    ran = runner.one(make_job('test -z "${AICD_SECRET_KEY:-}${AICD_TOKEN:-}"', 'echo "$AICD_SOMETHING_ELSE"'))
    assert ran.outcome.status == "success", ran.lines
    assert ran.out == ["kept"]


def test_commit_mode_runs_the_committed_tree(project: Path, tmp_path: Path) -> None:
    first = git(project, "rev-parse", "HEAD")
    (project / "README.md").write_text("second\n")
    git(project, "commit", "-qam", "second")
    (project / "README.md").write_text("dirty\n")
    ran = local_runner(project, tmp_path / "home", tmp_path / "run", commit=first).one(
        make_job("cat README.md")
    )
    assert ran.out == ["committed"]
    ran = local_runner(project, tmp_path / "home2", tmp_path / "run2", commit="HEAD").one(
        make_job("cat README.md")
    )
    assert ran.out == ["second"]


def test_unknown_commit_is_a_clear_error(project: Path, tmp_path: Path) -> None:
    runner = local_runner(project, tmp_path / "home", tmp_path / "run", commit="no-such-ref")
    with pytest.raises(AicdError, match="no-such-ref"):
        runner.one(make_job("true"))


def test_big_projects_are_copied_with_cp(
    project: Path, runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workspace_mod, "_CP_THRESHOLD", 0)
    (project / "run.sh").chmod(0o755)
    (project / "link").symlink_to("README.md")
    git(project, "add", "link")  # tracked: jobs get the tracked files
    ran = runner.one(make_job("./run.sh", "cat link", "echo edit >> README.md"))
    assert ran.outcome.status == "success", ran.lines
    assert ran.out == ["run", "committed"]
    assert (project / "README.md").read_text() == "committed\n"


def test_relative_run_dir(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = local_runner(project, tmp_path / "home", Path("rel-run"))
    ran = runner.one(make_job('cat "$F"'), variables=[Variable("F", "content", file=True)])
    assert ran.out == ["content"]
    assert (tmp_path / "rel-run" / "logs").is_dir()


def test_snapshot_is_taken_once_per_executor(project: Path, runner: Runner) -> None:
    async def body(s: Session) -> tuple[Ran, Ran]:
        first = await s.run(make_job("cat README.md", name="a"))
        (project / "README.md").write_text("changed during the run\n")
        second = await s.run(make_job("cat README.md", name="b"))
        return first, second

    first, second = runner.session(body)
    assert first.out == second.out == ["committed"]


def test_a_retry_gets_a_fresh_workspace(runner: Runner) -> None:
    job = make_job("test ! -e leftover", "touch leftover")

    async def body(s: Session) -> tuple[Ran, Ran]:
        return await s.run(job), await s.run(job)

    one, two = runner.session(body)
    assert one.outcome.status == two.outcome.status == "success"


def test_background_process_is_ended_with_the_job(runner: Runner) -> None:
    token = f"{time.time_ns() % 10**6 + 2000}.5"
    t0 = time.monotonic()
    ran = runner.one(make_job(f"sleep {token} &", "echo done"))
    assert ran.outcome.status == "success"
    assert time.monotonic() - t0 < 5
    assert processes_with(f"sleep {token}") == []


def test_log_path_default_and_explicit(runner: Runner, tmp_path: Path) -> None:
    async def body(s: Session) -> tuple[Ran, Ran]:
        default = await s.run(make_job("echo one"), job_id=5)
        req = s.request(make_job("echo two"), job_id=6)
        explicit_path = tmp_path / "elsewhere" / "x.log"
        lines: list[tuple[str, str]] = []
        from dataclasses import replace

        handle = await s.executor.start(
            replace(req, log_path=explicit_path), lambda k, t: lines.append((k, t))
        )
        return default, Ran(await handle.wait(), lines)

    default, explicit = runner.session(body)
    assert default.outcome.log_path == runner.run_dir / "logs" / "5.log"
    assert explicit.outcome.log_path == tmp_path / "elsewhere" / "x.log"
    assert explicit.log == "$ echo two\ntwo\n"


def test_file_variable_is_written_under_the_run_dir_and_referenced_by_path(runner: Runner) -> None:
    variables = [Variable("KEYFILE", "k-e-y", file=True), Variable("USES", "path=$KEYFILE")]
    ran = runner.one(make_job('echo "$USES"', 'cat "$KEYFILE"; echo'), variables=variables)
    path = ran.out[0].removeprefix("path=")
    assert path.startswith(str(runner.run_dir))
    assert ran.out[1] == "k-e-y"
    assert not Path(path).exists()  # removed when the job ended


def test_file_variable_file_is_private(runner: Runner) -> None:
    ran = runner.one(make_job('stat -c %a "$KEYFILE"'), variables=[Variable("KEYFILE", "x", file=True)])
    assert ran.out == ["600"]


def test_untracked_and_variable_artifact_paths(runner: Runner) -> None:
    job = make_job(
        "mkdir -p out && echo 1 > out/a && echo 2 > loose.txt && echo edit >> README.md",
        artifacts=Artifacts(
            paths=("$CI_PROJECT_DIR/out/", "${DIR}/a"), untracked=True, exclude=("loose.txt",)
        ),
    )
    ran = runner.one(job, variables=[Variable("DIR", "out")])
    assert ran.outcome.status == "success"
    stored = ran.outcome.artifacts_dir
    assert stored is not None
    files = sorted(p.relative_to(stored).as_posix() for p in stored.rglob("*") if p.is_file())
    assert files == ["out/a"]


def test_after_script_has_its_own_time_limit(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_mod, "AFTER_SCRIPT_TIMEOUT_S", 0.5)
    t0 = time.monotonic()
    ran = runner.one(make_job("echo ok", after_script=("sleep 30",)))
    assert time.monotonic() - t0 < 5
    assert ran.outcome.status == "success"
    assert any("after_script timed out" in line for line in ran.info)


def test_close_cancels_running_jobs_and_start_after_close_fails(runner: Runner) -> None:
    async def body(s: Session) -> tuple[str, bool]:
        handle, ran, _ = await s.start(make_job("echo started", "sleep 30"))
        await wait_for(lambda: "started" in ran.out)
        await s.executor.close()
        outcome = await asyncio.wait_for(handle.wait(), 10)
        try:
            await s.start(make_job("true"))
        except ExecutorError:
            return outcome.status, True
        return outcome.status, False

    status, refused = runner.session(body)
    assert status == "canceled"
    assert refused


def test_system_failure_becomes_an_outcome(runner: Runner, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    runner.run_dir = not_a_dir

    async def body(s: Session) -> Ran:
        req = s.request(make_job("true"))
        from dataclasses import replace

        handle = await s.executor.start(replace(req, log_path=tmp_path / "sys.log"), lambda k, t: None)
        return Ran(await handle.wait())

    o = runner.session(body).outcome
    assert (o.status, o.failure_reason) == ("failed", "runner_system_failure")
    assert o.error


def test_a_failing_output_callback_stops_the_job(runner: Runner) -> None:
    token = f"{time.time_ns() % 10**6 + 3000}.5"

    def on_output(kind: str, text: str) -> None:
        if kind == "out":
            raise RuntimeError("display broke")

    async def body(s: Session) -> Ran:
        handle = await s.executor.start(s.request(make_job("echo one", f"sleep {token}")), on_output)
        return Ran(await asyncio.wait_for(handle.wait(), 10))

    t0 = time.monotonic()
    o = runner.session(body).outcome
    assert time.monotonic() - t0 < 5
    assert (o.status, o.failure_reason) == ("failed", "runner_system_failure")
    assert o.error is not None and "display broke" in o.error
    assert processes_with(f"sleep {token}") == []


def test_snapshot_is_removed_on_close(runner: Runner) -> None:
    runner.one(make_job("true"))
    snapshots = runner.project / ".aicd" / "snapshots"
    assert not snapshots.exists() or list(snapshots.iterdir()) == []


def test_overhead_per_job_is_small(runner: Runner) -> None:
    """A sanity bound, far looser than the benchmark: 30 sequential jobs."""
    n = 30

    async def body(s: Session) -> float:
        await s.run(make_job("true", name="warm"))
        t0 = time.perf_counter()
        for i in range(n):
            await s.run(make_job("true", name=f"j{i}"))
        return (time.perf_counter() - t0) / n

    per_job = runner.session(body)
    t0 = time.perf_counter()
    for _ in range(n):
        subprocess.run(["bash", "-c", "true"], check=True)
    bare = (time.perf_counter() - t0) / n
    assert per_job - bare < 0.05, (per_job, bare)


def test_prune_builds_keeps_the_newest(tmp_path: Path) -> None:
    from aicd.executors.workspace import prune_builds

    builds = tmp_path / "builds"
    for pid in (1, 2, 10, 11):
        (builds / str(pid) / "job").mkdir(parents=True)
        (builds / str(pid) / "job" / "f").write_text("x")
    (builds / "not-a-pipeline").mkdir()
    assert prune_builds(builds, keep=2) == 2
    assert sorted(p.name for p in builds.iterdir()) == ["10", "11", "not-a-pipeline"]
    assert prune_builds(tmp_path / "missing", keep=1) == 0


def test_inherited_environment_follows_os_environ(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """base_env is kept between jobs, but never outlives a change of the process's environment."""
    ex = LocalExecutor(project, tmp_path / "home")
    monkeypatch.setenv("S17B_INHERITED", "one")
    first = ex.base_env()
    assert first["S17B_INHERITED"] == "one"
    first["S17B_INHERITED"] = "changed by a caller"
    assert ex.base_env()["S17B_INHERITED"] == "one"
    monkeypatch.setenv("S17B_INHERITED", "two")
    assert ex.base_env()["S17B_INHERITED"] == "two"
    monkeypatch.delenv("S17B_INHERITED")
    assert "S17B_INHERITED" not in ex.base_env()
    monkeypatch.setenv("AICD_S17B", "x")
    assert ex.base_env()["AICD_S17B"] == "x"
    ex.inherit_aicd_env = False
    assert "AICD_S17B" not in ex.base_env()


@pytest.fixture
def threaded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions the local executor hands to a worker thread, in order."""
    names: list[str] = []
    real_to_thread = asyncio.to_thread

    async def counting(func: object, *args: object, **kwargs: object) -> object:
        names.append(getattr(func, "__name__", "?"))
        return await real_to_thread(func, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(asyncio, "to_thread", counting)
    return names


@pytest.mark.parametrize("size", [10, local_mod.QUICK_BYTES + 1])
def test_artifacts_kept_and_restored_alike_on_the_loop_or_in_a_thread(
    runner: Runner, threaded: list[str], size: int
) -> None:
    """Small artifacts are kept and restored on the event loop, big ones in a worker thread
    (`_quick_prepare`, `_quick_finish`): the files kept, the files restored and the log lines
    are the same either way; only where the work runs differs (counted here)."""
    make = make_job(
        f"mkdir -p out && head -c {size} /dev/zero > out/model.bin",
        name="make",
        artifacts=Artifacts(paths=("out/model.bin", "out/missing.txt")),
    )
    use = make_job("stat -c %s out/model.bin", name="use")

    async def body(s: Session) -> tuple[Ran, Ran]:
        made, req = await s.run_req(make)
        used = await s.run(use, sources=[ArtifactSource("make", req.job_id)])
        return made, used

    made, used = runner.session(body)
    assert made.outcome.status == "success" and used.outcome.status == "success"
    stored = made.outcome.artifacts_dir
    assert stored is not None and (stored / "out" / "model.bin").stat().st_size == size
    assert "Kept artifacts: 1 file" in made.info
    assert any("out/missing.txt" in line for line in made.info)  # matched nothing: a warning
    assert used.out == [str(size)]
    assert "Restored artifacts of make: 1 file" in used.info
    big = size > local_mod.QUICK_BYTES
    assert ("_finish_sync" in threaded) == big
    assert ("_prepare" in threaded) == big


def test_small_tree_budget(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "f").write_bytes(b"x" * 100)
    (tmp_path / "g").write_bytes(b"y" * 10)
    assert local_mod._small_tree(tmp_path, [4, 110])  # d, e, f, g: 110 bytes
    assert not local_mod._small_tree(tmp_path, [3, 1000])
    assert not local_mod._small_tree(tmp_path, [10, 109])
    assert local_mod._small_tree(tmp_path / "absent", [0, 0])


def test_an_artifact_path_outside_the_workspace_is_left_to_the_thread_that_refuses_it(
    runner: Runner, threaded: list[str]
) -> None:
    """The quick path never looks outside the workspace: such a path goes to the worker thread,
    whose selection refuses it with a warning, as before."""
    job = make_job("echo hi > ../outside.txt", artifacts=Artifacts(paths=("../outside.txt",)))
    ran = runner.one(job)
    assert ran.outcome.status == "success"
    assert "_finish_sync" in threaded
    assert ran.outcome.artifacts_dir is None
    assert any("outside.txt" in line for line in ran.info), ran.info
