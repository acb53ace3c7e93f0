"""The interface suite every executor must pass.

Use it by subclassing :class:`ExecutorContract` in a test module and giving
the ``make_executor`` fixture: a function ``(project_dir, home) -> Executor``::

    class TestMyExecutorContract(ExecutorContract):
        @pytest.fixture
        def make_executor(self) -> ExecutorFactory:
            return lambda project, home: MyExecutor(project, home)

It drives the executor only through the protocol of ``aicd.executors.base``
(start, on_output, wait, cancel, close) and the files the protocol names:
the log file, ``run_dir/artifacts/<job_id>/`` for restoring artifacts.
Everything is real: a git repository in a temp folder, real processes.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from aicd.executors.base import ArtifactSource, Executor, JobHandle, JobOutcome, JobRequest
from aicd.pipeline.ir import Artifacts, Job, Reports, Variable
from aicd_testing import processes_with  # also imported from here by the executor tests

ExecutorFactory = Callable[[Path, Path], Executor]

PROJECT_FILES = {
    "README.md": "hello project\n",
    "src/app.py": "print('app')\n",
    ".gitignore": "ignored.txt\n",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def make_project(path: Path, files: dict[str, str] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in (files or PROJECT_FILES).items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def make_job(*script: str, name: str = "job", **fields: Any) -> Job:
    return Job(name=name, base_name=name, stage="test", script=tuple(script), **fields)


@dataclass
class Ran:
    outcome: JobOutcome
    lines: list[tuple[str, str]] = field(default_factory=list)

    @property
    def out(self) -> list[str]:
        return [text for kind, text in self.lines if kind == "out"]

    @property
    def cmds(self) -> list[str]:
        return [text for kind, text in self.lines if kind == "cmd"]

    @property
    def info(self) -> list[str]:
        return [text for kind, text in self.lines if kind == "info"]

    @property
    def log(self) -> str:
        return self.outcome.log_path.read_text(encoding="utf-8", errors="replace")


class Session:
    """One executor inside one event loop."""

    def __init__(self, runner: Runner, executor: Executor) -> None:
        self.runner = runner
        self.executor = executor

    def request(
        self,
        job: Job,
        variables: Sequence[Variable] = (),
        sources: Sequence[ArtifactSource] = (),
        job_id: int | None = None,
    ) -> JobRequest:
        return JobRequest(
            job=job,
            job_id=job_id if job_id is not None else self.runner.next_id(),
            attempt=1,
            pipeline_id=self.runner.pipeline_id,
            run_dir=self.runner.run_dir,
            variables=tuple(variables),
            artifact_sources=tuple(sources),
        )

    async def start(self, job: Job, **kw: Any) -> tuple[JobHandle, Ran, JobRequest]:
        req = self.request(job, **kw)
        lines: list[tuple[str, str]] = []
        handle = await self.executor.start(req, lambda kind, text: lines.append((kind, text)))
        return handle, Ran(outcome=None, lines=lines), req  # type: ignore[arg-type]

    async def run(self, job: Job, **kw: Any) -> Ran:
        handle, ran, _ = await self.start(job, **kw)
        ran.outcome = await asyncio.wait_for(handle.wait(), 30)
        return ran

    async def run_req(self, job: Job, **kw: Any) -> tuple[Ran, JobRequest]:
        handle, ran, req = await self.start(job, **kw)
        ran.outcome = await asyncio.wait_for(handle.wait(), 30)
        return ran, req


class Runner:
    def __init__(self, factory: ExecutorFactory, project: Path, home: Path, run_dir: Path) -> None:
        self.factory = factory
        self.project = project
        self.home = home
        self.run_dir = run_dir
        self.pipeline_id = 1
        self._ids = 100

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def session(self, body: Callable[[Session], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            executor = self.factory(self.project, self.home)
            try:
                return await body(Session(self, executor))
            finally:
                await executor.close()

        return asyncio.run(main())

    def one(self, job: Job, **kw: Any) -> Ran:
        async def body(s: Session) -> Ran:
            return await s.run(job, **kw)

        result: Ran = self.session(body)
        return result


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


class ExecutorContract:
    """Behaviour every executor must show. Subclasses provide ``make_executor``."""

    # False for an executor whose jobs start from a clean environment (the sandbox)
    inherits_runner_environment = True

    @pytest.fixture
    def make_executor(self) -> ExecutorFactory:
        raise NotImplementedError("give the executor factory in the subclass")

    @pytest.fixture
    def project(self, tmp_path: Path) -> Path:
        return make_project(tmp_path / "project")

    @pytest.fixture
    def runner(self, make_executor: ExecutorFactory, project: Path, tmp_path: Path) -> Runner:
        return Runner(make_executor, project, tmp_path / "home", tmp_path / "run")

    # -- running a script ---------------------------------------------------------------------

    def test_success(self, runner: Runner) -> None:
        ran = runner.one(make_job("echo hello"))
        o = ran.outcome
        assert (o.status, o.exit_code, o.failure_reason) == ("success", 0, None)
        assert ran.lines[:2] == [("cmd", "echo hello"), ("out", "hello")]
        assert o.started_at <= o.finished_at
        assert "$ echo hello\nhello\n" in ran.log

    def test_failure_stops_at_first_failing_command_with_its_exit_code(self, runner: Runner) -> None:
        ran = runner.one(make_job("echo one", "(exit 7)", "echo never"))
        o = ran.outcome
        assert (o.status, o.exit_code, o.failure_reason) == ("failed", 7, "script_failure")
        assert ran.out == ["one"]
        assert "never" not in ran.log

    def test_before_script_runs_first_in_the_same_shell(self, runner: Runner) -> None:
        job = make_job('echo "$X"', before_script=("X=from-before",))
        ran = runner.one(job)
        assert ran.cmds == ["X=from-before", 'echo "$X"']
        assert ran.out == ["from-before"]

    def test_multi_line_command(self, runner: Runner) -> None:
        ran = runner.one(make_job("for i in 1 2 3; do\n  echo line-$i\ndone\n", "echo after"))
        assert ran.outcome.status == "success"
        assert ran.out == ["line-1", "line-2", "line-3", "after"]
        assert ran.cmds[0].startswith("for i in 1 2 3; do")
        assert ran.cmds[1] == "echo after"

    def test_stdout_and_stderr_keep_their_order(self, runner: Runner) -> None:
        script = "for i in 1 2 3 4 5 6; do if [ $((i % 2)) = 0 ]; then echo e$i >&2; else echo o$i; fi; done"
        ran = runner.one(make_job(script))
        assert ran.out == ["o1", "e2", "o3", "e4", "o5", "e6"]

    def test_output_without_final_newline_and_bad_utf8(self, runner: Runner) -> None:
        ran = runner.one(make_job("printf 'no-newline'", r"printf 'bad \377 byte\n'", "echo next"))
        assert ran.out[0] == "no-newline"
        assert ran.out[1].startswith("bad ") and ran.out[1].endswith(" byte")
        assert ran.out[2] == "next"
        assert ran.cmds == ["printf 'no-newline'", r"printf 'bad \377 byte\n'", "echo next"]

    def test_stdin_is_closed(self, runner: Runner) -> None:
        ran = runner.one(make_job("cat; echo done"))
        assert ran.outcome.status == "success"
        assert ran.out == ["done"]

    def test_workspace_is_cwd_and_ci_project_dir(self, runner: Runner) -> None:
        ran = runner.one(make_job('test "$PWD" = "$CI_PROJECT_DIR"', "cat README.md", "test -f src/app.py"))
        assert ran.outcome.status == "success", ran.lines
        assert ran.out == ["hello project"]

    def test_job_editing_a_tracked_file_does_not_change_the_project(self, runner: Runner) -> None:
        async def body(s: Session) -> tuple[Ran, Ran]:
            first = await s.run(
                make_job("echo changed > README.md", "rm src/app.py", "touch new.txt", name="a")
            )
            second = await s.run(
                make_job("cat README.md", "test -f src/app.py", "test ! -e new.txt", name="b")
            )
            return first, second

        first, second = runner.session(body)
        assert first.outcome.status == "success"
        assert second.outcome.status == "success", second.lines
        assert second.out == ["hello project"]
        assert (runner.project / "README.md").read_text() == "hello project\n"
        assert (runner.project / "src/app.py").exists()
        assert not (runner.project / "new.txt").exists()

    # -- variables ------------------------------------------------------------------------------

    def test_variables_later_definitions_win_and_nest(self, runner: Runner) -> None:
        variables = [
            Variable("A", "low"),
            Variable("B", "b-$A"),
            Variable("A", "high"),
            Variable("RAW", "$A", expand=False),
        ]
        ran = runner.one(make_job('echo "$A $B $RAW"'), variables=variables)
        assert ran.out == ["high b-high $A"]

    def test_runner_environment_is_inherited_or_not(
        self, runner: Runner, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AICD_CONTRACT_INHERITED", "yes")
        ran = runner.one(make_job('echo "[$AICD_CONTRACT_INHERITED]"'))
        assert ran.out == (["[yes]"] if self.inherits_runner_environment else ["[]"])

    def test_file_variable_holds_a_path_to_the_value(self, runner: Runner) -> None:
        ran = runner.one(
            make_job('test -f "$CONF"', 'cat "$CONF"'),
            variables=[Variable("CONF", "line1\nline2", file=True)],
        )
        assert ran.outcome.status == "success", ran.lines
        assert ran.out == ["line1", "line2"]

    def test_masked_values_never_reach_output_or_log(self, runner: Runner) -> None:
        secret = "s3cr3t-" + secrets.token_hex(6)
        job = make_job(
            'echo "token=$TOKEN"',
            f"echo literal {secret}",
            f"echo {secret} >&2",
            after_script=('echo "after $TOKEN"',),
        )
        ran = runner.one(job, variables=[Variable("TOKEN", secret, masked=True)])
        assert ran.outcome.status == "success"
        for kind, text in ran.lines:
            assert secret not in text, (kind, text)
        assert secret not in ran.log
        assert "token=[MASKED]" in ran.out
        assert "after [MASKED]" in ran.out

    def test_a_masked_value_split_by_the_line_cut_stays_masked(self, runner: Runner) -> None:
        """Issue 11: a line longer than the 256 KiB cut is logged in pieces; a secret across the
        cut was masked in neither piece (each half is shorter than the secret)."""
        from aicd.executors.script import MAX_LINE_BYTES

        secret = "s3cr3t-" + secrets.token_hex(8)
        for before in (MAX_LINE_BYTES - 5, MAX_LINE_BYTES - len(secret) + 1, 2 * MAX_LINE_BYTES - 9):
            job = make_job(f"head -c {before} /dev/zero | tr '\\0' x; echo \"$TOKEN tail\"", "echo done")
            ran = runner.one(job, variables=[Variable("TOKEN", secret, masked=True)])
            assert ran.outcome.status == "success"
            text = "".join(ran.out)
            assert secret[:6] not in text and secret[-6:] not in text, before
            assert text.count("x") == before and text.endswith("[MASKED] taildone"), text[-100:]
            assert secret[:6] not in ran.log and secret[-6:] not in ran.log

    def test_masked_values_never_reach_reports(self, runner: Runner) -> None:
        """Issue 11: JUnit test names and output, and metrics' names, are shown by the API."""
        secret = "s3cr3t-" + secrets.token_hex(8)
        junit = (
            '<testsuite name="s"><testcase name="test_$TOKEN" classname="c_$TOKEN">'
            '<failure message="got $TOKEN">trace $TOKEN</failure><system-out>$TOKEN</system-out>'
            "</testcase></testsuite>"
        )
        job = make_job(
            f'echo "{junit.replace(chr(34), chr(92) + chr(34))}" > report.xml',
            'printf \'acc{t="%s"} 0.5\\nloss 0.25\\n\' "$TOKEN" > metrics.txt',
            artifacts=Artifacts(reports=Reports(junit=("report.xml",), metrics=("metrics.txt",))),
        )

        async def body(session: Session) -> tuple[Ran, JobRequest]:
            return await session.run_req(job, variables=[Variable("TOKEN", secret, masked=True)])

        ran, req = runner.session(body)
        assert ran.outcome.status == "success" and ran.outcome.tests is not None
        assert ran.outcome.tests.failed == 1
        assert ran.outcome.metrics == {'acc{t="[MASKED]"}': 0.5, "loss": 0.25}
        kept = list((runner.run_dir / "reports" / str(req.job_id)).rglob("*.xml"))
        assert kept, "the JUnit file is kept for the test report"
        for path in kept:
            text = path.read_text()
            assert secret not in text and "test_[MASKED]" in text and "trace [MASKED]" in text

    # -- after_script -------------------------------------------------------------------------

    def test_after_script_sees_status_and_workspace(self, runner: Runner) -> None:
        ok = runner.one(
            make_job("echo made > made.txt", after_script=('echo "status=$CI_JOB_STATUS"', "cat made.txt"))
        )
        assert ok.outcome.status == "success"
        assert ok.out[-2:] == ["status=success", "made"]
        bad = runner.one(make_job("exit 4", after_script=('echo "status=$CI_JOB_STATUS"',)))
        assert (bad.outcome.status, bad.outcome.exit_code) == ("failed", 4)
        assert bad.out[-1] == "status=failed"

    def test_after_script_failure_does_not_change_the_status(self, runner: Runner) -> None:
        ran = runner.one(make_job("echo fine", after_script=("exit 9", "echo not-run")))
        assert (ran.outcome.status, ran.outcome.exit_code) == ("success", 0)
        assert "not-run" not in ran.out

    # -- cancel and timeout -------------------------------------------------------------------

    def test_cancel(self, runner: Runner) -> None:
        async def body(s: Session) -> tuple[Ran, float]:
            job = make_job("echo started", "sleep 30", "echo never", after_script=("echo after-ran",))
            handle, ran, _ = await s.start(job)
            await wait_for(lambda: "started" in ran.out)
            t0 = time.monotonic()
            await handle.cancel()
            ran.outcome = await asyncio.wait_for(handle.wait(), 10)
            return ran, time.monotonic() - t0

        ran, took = runner.session(body)
        assert ran.outcome.status == "canceled"
        assert took < 5
        assert "never" not in ran.out
        assert "after-ran" not in ran.out  # no after_script after a user cancel

    def test_timeout_is_a_failure_and_after_script_runs(self, runner: Runner) -> None:
        async def body(s: Session) -> Ran:
            job = make_job("echo started", "sleep 30", after_script=('echo "after=$CI_JOB_STATUS"',))
            handle, ran, _ = await s.start(job)
            await wait_for(lambda: "started" in ran.out)
            await handle.cancel("timeout")
            ran.outcome = await asyncio.wait_for(handle.wait(), 10)
            return ran

        ran = runner.session(body)
        assert (ran.outcome.status, ran.outcome.failure_reason) == ("failed", "job_execution_timeout")
        assert "after=failed" in ran.out

    def test_cancel_kills_the_whole_process_tree(self, runner: Runner) -> None:
        token = f"{secrets.randbelow(10**6) + 1000}.{secrets.randbelow(10**6)}"
        background, subshell = f"sleep {token}1", f"sleep {token}2"

        async def body(s: Session) -> Ran:
            job = make_job(f"{background} &", f"( {subshell}; echo x )")
            handle, ran, _ = await s.start(job)
            await wait_for(lambda: len(processes_with(f"sleep {token}")) >= 2)
            await handle.cancel()
            ran.outcome = await asyncio.wait_for(handle.wait(), 10)
            return ran

        ran = runner.session(body)
        assert ran.outcome.status == "canceled"
        assert processes_with(f"sleep {token}") == []

    def test_cancel_before_it_ran_and_after_it_finished(self, runner: Runner) -> None:
        async def body(s: Session) -> tuple[Ran, Ran]:
            handle, early, _ = await s.start(make_job("echo should-not-matter; sleep 30"))
            await handle.cancel()
            early.outcome = await asyncio.wait_for(handle.wait(), 10)
            late = await s.run(make_job("echo done"))
            return early, late

        early, late = runner.session(body)
        assert early.outcome.status == "canceled"
        assert late.outcome.status == "success"

    # -- artifacts ------------------------------------------------------------------------------

    def test_artifacts_are_kept_and_restored_in_order(self, runner: Runner) -> None:
        produce_a = make_job(
            "mkdir -p out/deep/er && echo a > out/deep/er/x.txt",
            "echo a > out/skip.log && echo a > both.txt",
            name="produce-a",
            artifacts=Artifacts(paths=("out/**/*.txt", "both.txt")),
        )
        produce_b = make_job(
            "echo b > both.txt",
            name="produce-b",
            artifacts=Artifacts(paths=("both.txt",)),
        )

        async def body(s: Session) -> Ran:
            a, req_a = await s.run_req(produce_a)
            b, req_b = await s.run_req(produce_b)
            assert a.outcome.status == b.outcome.status == "success"
            sources = [ArtifactSource("produce-a", req_a.job_id), ArtifactSource("produce-b", req_b.job_id)]
            return await s.run(
                make_job("cat out/deep/er/x.txt", "test ! -e out/skip.log", "cat both.txt", name="consume"),
                sources=sources,
            )

        ran = runner.session(body)
        assert ran.outcome.status == "success", ran.lines
        assert ran.out == ["a", "b"]

    def test_artifacts_exclude_and_when(self, runner: Runner) -> None:
        keep_on_failure = make_job(
            "mkdir -p d/sub && touch d/a d/b d/sub/c",
            "exit 1",
            name="fails",
            artifacts=Artifacts(paths=("d/",), exclude=("d/b", "d/sub/**"), when="on_failure"),
        )
        not_on_failure = make_job(
            "touch lost.txt", "exit 1", name="fails-too", artifacts=Artifacts(paths=("lost.txt",))
        )

        async def body(s: Session) -> Ran:
            one, req1 = await s.run_req(keep_on_failure)
            two, req2 = await s.run_req(not_on_failure)
            assert one.outcome.status == two.outcome.status == "failed"
            sources = [ArtifactSource("fails", req1.job_id), ArtifactSource("fails-too", req2.job_id)]
            return await s.run(
                make_job("test -f d/a", "test ! -e d/b", "test ! -e d/sub/c", "test ! -e lost.txt"),
                sources=sources,
            )

        ran = runner.session(body)
        assert ran.outcome.status == "success", ran.lines

    def test_artifacts_are_collected_after_after_script(self, runner: Runner) -> None:
        produce = make_job(
            "mkdir -p logs && echo keep > logs/a.log && echo drop > logs/b.badlog",
            name="produce",
            after_script=("rm logs/*.badlog",),
            artifacts=Artifacts(paths=("logs",)),
        )

        async def body(s: Session) -> Ran:
            ran, req = await s.run_req(produce)
            assert ran.outcome.status == "success"
            return await s.run(
                make_job("cat logs/a.log", "test ! -e logs/b.badlog"),
                sources=[ArtifactSource("produce", req.job_id)],
            )

        ran = runner.session(body)
        assert ran.outcome.status == "success", ran.lines
        assert ran.out == ["keep"]

    def test_artifact_path_matching_nothing_warns_and_does_not_fail(self, runner: Runner) -> None:
        ran = runner.one(make_job("true", artifacts=Artifacts(paths=("nothing-here/*",))))
        assert ran.outcome.status == "success"
        assert any("nothing-here/*" in line and "no matching files" in line for line in ran.info)

    # -- reports --------------------------------------------------------------------------------

    def test_reports(self, runner: Runner) -> None:
        junit = (
            '<testsuites><testsuite name="s">'
            '<testcase name="a"/><testcase name="b"><failure message="x"/></testcase>'
            '<testcase name="c"><skipped/></testcase><testcase name="d"><error/></testcase>'
            "</testsuite></testsuites>"
        )
        script = (
            f"echo '{junit}' > report.xml",
            "printf '# comment\\nVERSION=1.2\\nQUOTED=\"a b\"\\n' > build.env",
            "printf '# TYPE acc gauge\\nacc 0.93\\nloss{split=\"val\"} 0.25\\n' > metrics.txt",
            "echo 'Coverage: 81.5%'",
        )
        job = make_job(
            *script,
            coverage=r"/Coverage: (\d+\.\d+)%/",
            artifacts=Artifacts(
                reports=Reports(junit=("*.xml",), dotenv=("build.env",), metrics=("metrics.txt",))
            ),
        )
        o = runner.one(job).outcome
        assert o.status == "success"
        assert [(v.key, v.value) for v in o.dotenv] == [("VERSION", "1.2"), ("QUOTED", "a b")]
        assert o.tests is not None
        assert (o.tests.total, o.tests.passed, o.tests.failed, o.tests.errors, o.tests.skipped) == (
            4,
            1,
            1,
            1,
            1,
        )
        assert o.metrics == {"acc": 0.93, 'loss{split="val"}': 0.25}
        assert o.coverage == 81.5

    def test_malformed_reports_warn_and_do_not_fail(self, runner: Runner) -> None:
        job = make_job(
            "echo '<testsuite><testcase' > broken.xml",
            "echo 'not a dotenv line' > build.env",
            artifacts=Artifacts(reports=Reports(junit=("broken.xml",), dotenv=("build.env",))),
        )
        ran = runner.one(job)
        assert ran.outcome.status == "success"
        assert ran.outcome.dotenv == ()
        assert any("broken.xml" in line for line in ran.info)
        assert any("build.env" in line for line in ran.info)

    def test_report_files_that_are_links_are_not_read(self, runner: Runner, tmp_path: Path) -> None:
        outside = tmp_path / "outside.env"
        outside.write_text("LEAKED=from outside the workspace\n")
        job = make_job(
            f"ln -s {outside} build.env",
            f"ln -s {outside} metrics.txt",
            name="links",
            artifacts=Artifacts(reports=Reports(dotenv=("build.env",), metrics=("metrics.txt",))),
        )
        ran = runner.one(job)
        assert ran.outcome.status == "success", ran.lines
        assert ran.outcome.dotenv == () and ran.outcome.metrics == {}
        info = [text for kind, text in ran.lines if kind == "info"]
        assert any("build.env: a symbolic link" in line for line in info), info
        assert any("metrics.txt: a symbolic link" in line for line in info), info

    def test_dotenv_report_is_not_restored_as_a_file(self, runner: Runner) -> None:
        produce = make_job(
            "echo V=1 > build.env",
            name="produce",
            artifacts=Artifacts(reports=Reports(dotenv=("build.env",))),
        )

        async def body(s: Session) -> Ran:
            ran, req = await s.run_req(produce)
            assert [(v.key, v.value) for v in ran.outcome.dotenv] == [("V", "1")]
            return await s.run(
                make_job("test ! -e build.env"), sources=[ArtifactSource("produce", req.job_id)]
            )

        assert runner.session(body).outcome.status == "success"
