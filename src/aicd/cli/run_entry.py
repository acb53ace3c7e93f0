"""`aicd run` without click: the common command line parsed here, the process's start and end.

`aicd run` is the command people time (issue 17), and click's import is ~5% of a small run's
instructions. `parse_plain_run` reads the command lines that need no help, no conversion error
and no option click alone knows (`aicd run`, `aicd run --json -j 4 build test`, `-C dir`,
`-v KEY=VALUE`...). Anything else (`--help`, `--dry-run`, `--secret`, `--variables-file`, an
unknown or misspelt option, a missing or odd value, `--`, `-fX`) returns None, and the click
command parses the line: its help, its errors and its exit codes stay the only ones. Both
paths then call `run_pipeline`, so what runs is the same.

This module imports nothing of click and nothing heavy: `aicd.cli.main` imports it first.
"""

from __future__ import annotations

import errno
import gc
import os
import sys
from pathlib import Path
from typing import TypedDict

from aicd.errors import AicdError

# Options of `aicd run` that take a value, by every spelling click accepts as a separate word
# (or as `--long=value`); the click command (`aicd.cli.commands.run`) declares the same.
_VALUE_OPTIONS = {
    "--file": "file",
    "-f": "file",
    "--cwd": "cwd",
    "-C": "cwd",
    "--variable": "variables",
    "-v": "variables",
    "--manual": "manual",
    "--commit": "commit",
    "--concurrency": "concurrency",
    "-j": "concurrency",
}
_FLAGS = {"--json": "as_json", "--needs": "with_needs", "--isolate": "isolate", "--untracked": "untracked"}
_REPEATED = ("variables", "manual")
CONCURRENCY_RANGE = (1, 1024)


class PlainRun(TypedDict):
    """A plain `aicd run` command line, as the click command would have read it."""

    jobs: tuple[str, ...]
    file: str
    cwd: str | None
    variables: tuple[str, ...]
    manual: tuple[str, ...]
    commit: str | None
    concurrency: int | None
    as_json: bool
    with_needs: bool
    isolate: bool
    untracked: bool


def parse_plain_run(args: list[str]) -> PlainRun | None:
    """The arguments after `run`, or None when click must read them (see the module's doc)."""
    run = PlainRun(
        jobs=(),
        file=".gitlab-ci.yml",
        cwd=None,
        variables=(),
        manual=(),
        commit=None,
        concurrency=None,
        as_json=False,
        with_needs=False,
        isolate=False,
        untracked=False,
    )
    repeated: dict[str, list[str]] = {name: [] for name in _REPEATED}
    jobs: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-"):
            jobs.append(arg)
            continue
        if arg in _FLAGS:
            run[_FLAGS[arg]] = True  # type: ignore[literal-required]
            continue
        name, eq, value = arg.partition("=")
        if not (name in _VALUE_OPTIONS and (eq == "" or name.startswith("--"))):
            return None  # --help, --dry-run, a short option with its value attached, a typo...
        if not eq:
            if i == len(args) or args[i].startswith("-"):
                return None  # click's message for a missing value (or a value that looks like a flag)
            value = args[i]
            i += 1
        dest = _VALUE_OPTIONS[name]
        if dest in repeated:
            repeated[dest].append(value)
        elif dest == "concurrency":
            low, high = CONCURRENCY_RANGE
            if not (value.isascii() and value.isdigit() and low <= int(value) <= high):
                return None  # click's IntRange message
            run["concurrency"] = int(value)
        else:
            run[dest] = value  # type: ignore[literal-required]  # the last one wins, as in click
    run["jobs"] = tuple(jobs)
    run["variables"] = tuple(repeated["variables"])
    run["manual"] = tuple(repeated["manual"])
    return run


def plain_run(args: list[str]) -> None:
    """Run `aicd run ARGS` and leave the process, or return when click must parse ARGS."""
    parsed = parse_plain_run(args)
    if parsed is None:
        return
    import_asyncio_without_ssl()
    try:
        run_pipeline(**parsed, secrets=(), variables_files=())
    except AicdError as exc:
        sys.stderr.write(error_message(exc) + "\n")
        sys.stderr.flush()
        sys.exit(exc.exit_code)
    # the rest as click's standalone mode
    except (KeyboardInterrupt, EOFError):
        sys.stderr.write("\nAborted!\n")
        sys.exit(1)
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        # the reader went away: nothing more to say to it, and no error about the flush at exit
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115
        sys.exit(1)
    finally:
        gc.enable()


def import_asyncio_without_ssl() -> None:
    """Import asyncio without the `ssl` module, which a local run never uses.

    asyncio imports `ssl` if it can (~27 M instructions, 6% of a small run: its C module, its
    enums, its certificate machinery), for connections over TLS; `aicd run` opens none (its jobs
    are other processes, its pipeline files are local). asyncio is imported with `ssl` hidden,
    as on a Python built without it; `ssl` is not hidden afterwards (an `import ssl` later in
    the process gets it), but this process's asyncio has no TLS. Only for `aicd run`'s plain
    command line, in its own process, and only if neither module is imported yet.
    """
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]  # `import ssl` raises ImportError
    try:
        import asyncio  # noqa: F401
    finally:
        del sys.modules["ssl"]


def error_message(exc: AicdError) -> str:
    """What `aicd` prints for an AicdError: one clean line after `aicd: `, or the clean lines."""
    from aicd.cli.terminal import clean_lines

    message = clean_lines(exc)  # it may quote a job name, a ref, a server's answer...
    return f"aicd: {message}" if "\n" not in message else message


def project_dir(cwd: str | None) -> Path:
    try:
        path = Path(cwd or ".").resolve()
    except OSError as exc:  # the current folder was deleted, or cannot be read
        where = cwd or "the current folder"
        raise AicdError(
            f"{where}: {exc.strerror or exc}; change to the project's folder or give --cwd"
        ) from None
    if not path.is_dir():
        raise AicdError(f"{path}: no such directory (--cwd)")
    return path


def run_pipeline(
    *,
    jobs: tuple[str, ...],
    file: str,
    cwd: str | None,
    variables: tuple[str, ...],
    secrets: tuple[str, ...],
    variables_files: tuple[str, ...],
    manual: tuple[str, ...],
    with_needs: bool,
    commit: str | None,
    concurrency: int | None,
    as_json: bool,
    isolate: bool,
    untracked: bool,
) -> None:
    """`aicd run` (not --dry-run) once its command line is read: run, answer, leave the process."""
    from aicd.cli.run_cmd import run_command
    from aicd.core.variables_input import parse_pipeline_variables

    where = project_dir(cwd)
    pipeline_vars = parse_pipeline_variables(variables, secrets, variables_files, where)
    started()
    code = run_command(
        project_dir=where,
        file=file,
        jobs=jobs,
        with_needs=with_needs,
        manual=manual,
        variables=pipeline_vars,
        commit=commit,
        concurrency=concurrency,
        as_json=as_json,
        isolate=isolate,
        untracked=untracked,
    )
    exit_process(code)


# The collector's thresholds while `aicd run` runs its pipeline (see `started`).
GC_YOUNG = 20_000
GC_OLDER = 20

# Set by `aicd.cli.main` (the `aicd` program, not a test's CliRunner) for `aicd run`.
FAST = {"on": False}


def fast_start() -> None:
    """Start-up makes tens of thousands of objects that live as long as the process; the
    collector, run every 700 allocations while modules load, finds nothing to free. `run`
    turns it back on once its modules are loaded (`started`)."""
    FAST["on"] = True
    gc.disable()


def started() -> None:
    """The command's modules are imported: collect garbage again (see `fast_start`), and leave
    what start-up made (modules, classes, functions: never garbage) out of every later collection."""
    if FAST["on"] and not gc.isenabled():
        gc.freeze()
        gc.enable()
        # A run makes and drops many short-lived objects per job (requests, events, futures) and
        # few cycles: the youngest generation is collected every 20,000 net allocations instead of
        # 700, an older one after 20 collections of the one below it instead of 10 (200
        # independent jobs: 609 -> 581 ms wall, medians of 8 alternating runs; peak RSS at 5,000
        # jobs: benchmarks/scale.py).
        gc.set_threshold(GC_YOUNG, GC_OLDER, GC_OLDER)


def exit_process(code: int) -> None:
    """Leave with ``code``. With `FAST` on and no other thread left: flush the output, run the
    exit handlers, and end the process without tearing down every module and object one by one
    (~30 ms for `aicd run`'s ~270 modules). Anything that must be written is written before
    this: logs, the store, the JSON answer."""
    if FAST["on"] and threading_alone():
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            sys.exit(code)  # let Python's own shutdown report it
        import atexit

        atexit._run_exitfuncs()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            sys.exit(code)
        os._exit(code)
    sys.exit(code)


def threading_alone() -> bool:
    """No thread but this one (a thread module never imported: none was started from Python)."""
    threading = sys.modules.get("threading")
    return threading is None or threading.active_count() == 1
