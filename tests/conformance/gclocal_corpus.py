"""The gitlab-ci-local conformance corpus: read a case, run it through `aicd`, compare.

A case folder holds a pipeline (`.gitlab-ci.yml` and the files it uses) and
what the reference runner (gitlab-ci-local 4.60.1, shell executor) printed:
`expected-run.txt`. Both that text and aicd's run are reduced to one shape,
`RunRecord` (refused or not, which jobs ran and how they ended, each job's
`>` output lines, the exit code), and `compare` lists every difference.

Normalisations (both sides, documented in docs/conformance.md):
- ANSI escape sequences and carriage returns are removed, trailing blanks
  of an output line are dropped;
- the project path is replaced by `<project>`: the reference's
  `/tmp/tmp.XXXXXXXXXX[/.gitlab-ci-local/builds/<job>]` and aicd's project
  folder and job workspace (`<project>/.aicd/builds/<pipeline>/<job>`);
- the reference ran as a user whose login was `maintainers`, so aicd runs
  with USER/LOGNAME set to that.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(
    os.environ.get(
        "AICD_CONFORMANCE_CORPUS",
        str(REPO_ROOT.parent / "shared" / "conformance" / "gitlab-ci-local" / "cases"),
    )
)
AICD = [sys.executable, "-m", "aicd.cli.main"]
USER_LOGIN = "maintainers"
CASE_TIMEOUT_S = 120.0

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_SECTION = re.compile(r"section_(?:start|end):\d+:[^\r\n]*\r")
_REF_TMP = re.compile(r"/tmp/tmp\.[A-Za-z0-9]+(?:/\.gitlab-ci-local/builds/[^/\s]+)?")
_SUMMARY = re.compile(r"^ (PASS|WARN|FAIL)  (.+)$")
_EXIT = re.compile(r"^exit=(\d+)$")


@dataclass(frozen=True)
class RunRecord:
    """One runner's run of one pipeline, reduced to what both runners share."""

    refused: bool
    exit_code: int
    outcomes: dict[str, str] = field(default_factory=dict)  # job that ran -> PASS | WARN | FAIL
    outputs: dict[str, list[str]] = field(default_factory=dict)  # job -> its `>` lines, in order
    message: str = ""  # the refusal's text (or stderr): for failure messages only


@dataclass(frozen=True)
class CompareOptions:
    """How to compare one case's `>` lines; every entry has a reason in the case table."""

    unordered: frozenset[str] = frozenset()  # jobs compared as a multiset (stdout/stderr interleave)
    skip_output: frozenset[str] = frozenset()  # jobs whose `>` lines are not compared ("*": all)
    drop: re.Pattern[str] | None = None  # output lines left out on both sides


# --------------------------------------------------------------------------- the corpus


def case_names() -> list[str]:
    if not CORPUS.is_dir():
        return []
    return sorted(p.name for p in CORPUS.iterdir() if (p / "expected-run.txt").is_file())


def read_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


def listed_jobs(case: str) -> list[dict[str, str]]:
    """Rows of expected-list.csv (`gitlab-ci-local --list-csv-all`), warnings skipped."""
    text = read_text(CORPUS / case / "expected-list.csv")
    lines = [ln for ln in text.split("\n") if ln.strip() and not ln.startswith(" WARN ")]
    if not lines or not lines[0].startswith("name;"):
        return []
    reader = csv.DictReader(io.StringIO("\n".join(lines)), delimiter=";")
    return [dict(row) for row in reader]


def reference_record(case: str) -> RunRecord:
    names = {row["name"] for row in listed_jobs(case)}
    return parse_run_text(read_text(CORPUS / case / "expected-run.txt"), names)


# --------------------------------------------------------------------------- normalising


def normalise(text: str, paths: Sequence[str] = ()) -> str:
    """One output line as both runners should agree on it."""
    text = _SECTION.sub("", _ANSI.sub("", text)).replace("\r", "")
    text = _REF_TMP.sub("<project>", text)
    for path in sorted(paths, key=len, reverse=True):
        if path:
            text = text.replace(path, "<project>")
    return text.rstrip()


_PARALLEL_N = re.compile(r"^(.*): \[(\d+)/(\d+)\]$")
_MATRIX = re.compile(r"^(.*): \[(.*)\]$")


def canonical_name(name: str) -> str:
    """A parallel job's name in one form: `job 1/2`, `job: [a,b]` (see the module doc)."""
    m = _PARALLEL_N.match(name)
    if m:
        return f"{m.group(1)} {m.group(2)}/{m.group(3)}"
    m = _MATRIX.match(name)
    if m:
        return f"{m.group(1)}: [{m.group(2).replace(', ', ',')}]"
    return name


def job_lines(lines: Iterable[str], names: Iterable[str], paths: Sequence[str] = ()) -> dict[str, list[str]]:
    """The `JOB > text` lines of each known job, in order (longest job name wins)."""
    ordered = sorted(set(names), key=len, reverse=True)
    out: dict[str, list[str]] = {}
    for line in lines:
        for name in ordered:
            prefix = f"{name} >"
            if line == prefix or line.startswith(prefix + " "):
                out.setdefault(canonical_name(name), []).append(normalise(line[len(prefix) + 1 :], paths))
                break
    return out


def parse_run_text(text: str, known_jobs: Iterable[str] = ()) -> RunRecord:
    """Parse gitlab-ci-local's printout (or a table's expected run in the same form).

    A run that reached ` pipeline finished` ran; its summary lines (` PASS  job`,
    ` WARN  job`, ` FAIL  job`, after the last blank line) tell which jobs ran
    and how they ended. Without that line the runner refused the pipeline.
    """
    lines = text.split("\n")
    exit_code = 0
    for line in reversed(lines):
        m = _EXIT.match(line.strip())
        if m:
            exit_code = int(m.group(1))
            break
    end = next((i for i, ln in enumerate(lines) if ln.startswith("pipeline finished")), None)
    if end is None:
        body = [ln for ln in lines if ln.strip() and not _EXIT.match(ln.strip())]
        body = [ln for ln in body if not ln.startswith("Unable to retrieve default remote branch")]
        return RunRecord(refused=True, exit_code=exit_code, message="\n".join(body))
    start = end
    while start > 0 and lines[start - 1].strip():
        start -= 1
    outcomes: dict[str, str] = {}
    for line in lines[start:end]:
        m = _SUMMARY.match(line)
        if not m:
            continue
        verdict, name = m.group(1), m.group(2)
        if verdict == WARN and name.endswith("  after_script"):
            continue  # "after_script failed" note; the job's own line says how it ended
        outcomes[canonical_name(name)] = verdict
    names = set(known_jobs) | {m.group(2) for m in map(_SUMMARY.match, lines[start:end]) if m}
    return RunRecord(
        refused=False,
        exit_code=exit_code,
        outcomes=outcomes,
        outputs=job_lines(lines[:start], names),
    )


# --------------------------------------------------------------------------- running aicd


@dataclass(frozen=True)
class AicdRun:
    project: Path
    returncode: int
    stdout: str
    stderr: str
    result: dict[str, Any] | None  # the --json object, if stdout held one

    def describe(self, limit: int = 4000) -> str:
        err = self.stderr if len(self.stderr) <= limit else self.stderr[:limit] + "\n[...]"
        return f"exit {self.returncode}\n--- stdout\n{self.stdout[:limit]}\n--- stderr\n{err}"


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)


def make_case_repo(case: str, dest: Path) -> Path:
    """The case's files in a fresh repo: branch main, one commit, no remote."""
    skip = shutil.ignore_patterns("expected-run.txt", "expected-list.csv")
    shutil.copytree(CORPUS / case, dest, symlinks=True, ignore=skip)
    _git(dest, "init", "-q", "-b", "main")
    _git(dest, "config", "user.name", USER_LOGIN)
    _git(dest, "config", "user.email", f"{USER_LOGIN}@example.com")
    _git(dest, "config", "commit.gpgsign", "false")
    _git(dest, "add", "-A", "-f")
    _git(dest, "commit", "-q", "--no-verify", "-m", "conformance case")
    return dest


def aicd_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AICD_", "CI_", "GITLAB_", "GCL_"))}
    env.update(NO_COLOR="1", USER=USER_LOGIN, LOGNAME=USER_LOGIN)
    return env


def run_aicd(project: Path, *args: str, timeout: float = CASE_TIMEOUT_S) -> AicdRun:
    proc = subprocess.run(
        [*AICD, "run", "--json", *args],
        cwd=project,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        env=aicd_env(),
        stdin=subprocess.DEVNULL,
    )
    result: dict[str, Any] | None = None
    try:
        loaded = json.loads(proc.stdout)
        if isinstance(loaded, dict):
            result = loaded
    except ValueError:
        result = None
    return AicdRun(project, proc.returncode, proc.stdout, proc.stderr, result)


def _allowed(job: dict[str, Any]) -> bool:
    """Whether a failed job's failure was allowed (bool, or GitLab's exit_codes form)."""
    if "allowed_failure" in job:
        return bool(job["allowed_failure"])
    allow = job.get("allow_failure")
    codes = job.get("allow_failure_exit_codes")
    if isinstance(allow, dict):
        codes = allow.get("exit_codes")
        allow = False
    if isinstance(codes, int):
        codes = [codes]
    if codes and job.get("exit_code") in codes:
        return True
    return bool(allow)


def aicd_record(run: AicdRun) -> RunRecord:
    result = run.result
    errors = result.get("errors") if result else None
    jobs: list[dict[str, Any]] = list(result.get("jobs") or []) if result else []
    if result is None or errors:
        return RunRecord(refused=True, exit_code=run.returncode, message=run.stderr.strip())
    outcomes: dict[str, str] = {}
    for job in jobs:
        status = job.get("status")
        name = canonical_name(str(job["name"]))
        if status == "success":
            outcomes[name] = PASS
        elif status == "failed":
            outcomes[name] = WARN if _allowed(job) else FAIL
    paths = [str(run.project), str(run.project.resolve())]
    names = [str(j["name"]) for j in jobs]
    stderr_lines = run.stderr.split("\n")
    # A job's workspace is a path of its own; spot it as `<project>/.aicd/builds/<anything>/<slug>`.
    for m in re.finditer(re.escape(str(run.project.resolve())) + r"/\.aicd/builds/[^\s'\"]+", run.stderr):
        paths.append(m.group(0))
    return RunRecord(
        refused=False,
        exit_code=run.returncode,
        outcomes=outcomes,
        outputs=job_lines(stderr_lines, names, paths),
        message=run.stderr.strip(),
    )


# --------------------------------------------------------------------------- comparing


def _excerpt(text: str, limit: int = 600) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + " [...]"


def compare(expected: RunRecord, got: RunRecord, options: CompareOptions | None = None) -> list[str]:
    """Every way `got` (aicd) differs from `expected`; empty when they agree."""
    opts = options or CompareOptions()
    if "Traceback (most recent call last)" in got.message:
        return [f"aicd printed a Python traceback:\n{_excerpt(got.message, 2000)}"]
    if expected.refused:
        diffs: list[str] = []
        if got.exit_code == 0:
            diffs.append("the pipeline should be refused, but aicd exited 0")
        if not got.message.strip():
            diffs.append("the pipeline should be refused with an error message, but aicd's stderr is empty")
        if got.outcomes:
            diffs.append(f"the pipeline should be refused, but aicd ran jobs {sorted(got.outcomes)}")
        if diffs:
            diffs.append(f"expected refusal: {_excerpt(expected.message)}")
        return diffs
    if got.refused:
        return [f"aicd refused a pipeline that should run (exit {got.exit_code}): {_excerpt(got.message)}"]
    diffs = []
    missing = sorted(set(expected.outcomes) - set(got.outcomes))
    extra = sorted(set(got.outcomes) - set(expected.outcomes))
    if missing:
        diffs.append(f"jobs that should run but did not: {missing}")
    if extra:
        diffs.append(f"jobs that ran but should not: {extra}")
    for name in sorted(set(expected.outcomes) & set(got.outcomes)):
        if expected.outcomes[name] != got.outcomes[name]:
            diffs.append(f"job {name!r}: expected {expected.outcomes[name]}, got {got.outcomes[name]}")
        if "*" in opts.skip_output or name in opts.skip_output:
            continue
        want = [ln for ln in expected.outputs.get(name, []) if not (opts.drop and opts.drop.search(ln))]
        have = [ln for ln in got.outputs.get(name, []) if not (opts.drop and opts.drop.search(ln))]
        if name in opts.unordered:
            same = Counter(want) == Counter(have)
        else:
            same = want == have
        if not same:
            diffs.append(f"job {name!r} output differs:\n  expected {want!r}\n  got      {have!r}")
    if expected.exit_code != got.exit_code:
        diffs.append(f"exit code: expected {expected.exit_code}, got {got.exit_code}")
    return diffs
