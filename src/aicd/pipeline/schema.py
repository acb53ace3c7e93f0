"""Keyword tables and typed readers for `.gitlab-ci.yml` values.

Every reader takes the raw YAML value and an :class:`At` (where it is: the
file mark, the key path, whose it is) and returns the typed value, or None
after recording a located, actionable problem in :class:`Problems`. Nothing
here raises for bad input: the builder collects every problem, then raises
once.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from aicd.errors import Diagnostic
from aicd.pipeline.durations import DurationError, parse_duration
from aicd.pipeline.ir import Artifacts, Cache, Environment, Reports, Variable
from aicd.pipeline.nodes import NO_MARK, LocList, LocMap, Mark, Reference, describe
from aicd.suggest import did_you_mean

# -- keyword tables (GitLab CI YAML reference) ---------------------------------

TOP_LEVEL_KEYWORDS = frozenset(
    {
        "default",
        "include",
        "stages",
        "types",  # deprecated alias of stages
        "variables",
        "workflow",
        "spec",
        # deprecated globals, the same as under `default:`
        "image",
        "services",
        "cache",
        "before_script",
        "after_script",
    }
)

JOB_KEYWORDS = frozenset(
    {
        "after_script",
        "allow_failure",
        "artifacts",
        "before_script",
        "cache",
        "coverage",
        "dast_configuration",
        "dependencies",
        "environment",
        "except",
        "extends",
        "hooks",
        "identity",
        "id_tokens",
        "image",
        "inherit",
        "interruptible",
        "manual_confirmation",
        "needs",
        "only",
        "pages",
        "parallel",
        "release",
        "resource_group",
        "retry",
        "rules",
        "run",
        "script",
        "secrets",
        "services",
        "stage",
        "start_in",
        "tags",
        "timeout",
        "trigger",
        "type",  # deprecated alias of stage
        "variables",
        "when",
    }
)

# Keywords aicd accepts and ignores (they need a GitLab server), warned about once.
IGNORED_JOB_KEYWORDS = (
    "dast_configuration",
    "hooks",
    "identity",
    "id_tokens",
    "manual_confirmation",
    "pages",
    "release",
    "run",
    "secrets",
)

DEFAULT_KEYWORDS = frozenset(
    {
        "after_script",
        "artifacts",
        "before_script",
        "cache",
        "hooks",
        "id_tokens",
        "identity",
        "image",
        "interruptible",
        "retry",
        "services",
        "tags",
        "timeout",
    }
)

WORKFLOW_KEYWORDS = frozenset({"rules", "name", "auto_cancel"})
TRIGGER_KEYS = ("include", "project", "branch", "strategy", "forward", "inputs")

JOB_WHEN = ("on_success", "on_failure", "always", "manual", "delayed", "never")
ARTIFACTS_WHEN = ("on_success", "on_failure", "always")
CACHE_POLICIES = ("pull-push", "pull", "push")
ENV_ACTIONS = ("start", "prepare", "stop", "verify", "access")
DEPLOYMENT_TIERS = ("production", "staging", "testing", "development", "other")
ARTIFACTS_ACCESS = ("all", "developer", "maintainer", "none")
RETRY_WHEN = (
    "always",
    "unknown_failure",
    "script_failure",
    "api_failure",
    "stuck_or_timeout_failure",
    "runner_system_failure",
    "runner_unsupported",
    "stale_schedule",
    "job_execution_timeout",
    "archived_failure",
    "unmet_prerequisites",
    "scheduler_failure",
    "data_integrity_failure",
    "missing_dependency_failure",
)
REPORT_TYPES = (
    "junit",
    "dotenv",
    "metrics",
    "accessibility",
    "annotations",
    "api_fuzzing",
    "browser_performance",
    "coverage_report",
    "codequality",
    "container_scanning",
    "coverage_fuzzing",
    "cyclonedx",
    "dast",
    "dependency_scanning",
    "license_scanning",
    "load_performance",
    "performance",
    "requirements",
    "repository_xray",
    "sast",
    "secret_detection",
    "terraform",
)
ARTIFACTS_KEYS = (
    "paths",
    "exclude",
    "untracked",
    "when",
    "expire_in",
    "name",
    "expose_as",
    "public",
    "access",
    "reports",
)
CACHE_KEYS = ("key", "paths", "untracked", "policy", "when", "fallback_keys", "unprotect")
ENVIRONMENT_KEYS = ("name", "url", "action", "deployment_tier", "on_stop", "auto_stop_in", "kubernetes")
SCRIPT_MAX_DEPTH = 10
MAX_NAME = 255  # characters of a name that becomes a folder or an environment (GitLab's limit)
SCRIPT_MAX_LINES = 10_000


# -- where, and what went wrong --------------------------------------------------


@dataclass(frozen=True)
class At:
    """Where a value is: its mark, its GitLab key path ('artifacts:paths[0]'), its owner."""

    mark: Mark = NO_MARK
    key: str = ""
    owner: str = ""  # 'job "test"', or '' at the top level
    owner_path: str = ""  # 'jobs.test', for Diagnostic.path

    def child(self, key: str, mark: Mark | None = None) -> At:
        joined = f"{self.key}:{key}" if self.key else key
        return At(mark or self.mark, joined, self.owner, self.owner_path)

    def item(self, index: int, mark: Mark | None = None) -> At:
        return At(mark or self.mark, f"{self.key}[{index}]", self.owner, self.owner_path)

    def of(self, container: Any, key: str | int) -> At:
        """The place of `container[key]` (a LocMap key or a LocList index)."""
        if isinstance(key, int):
            mark = container.mark_of(key) if isinstance(container, LocList) else self.mark
            value = container[key] if isinstance(container, list) and key < len(container) else None
            return self.item(key, _own_mark(value) or mark)
        mark = container.mark_of(key) if isinstance(container, LocMap) else self.mark
        return self.child(key, mark)

    @property
    def path(self) -> str:
        key = self.key.replace(":", ".")
        if self.owner_path and key:
            return f"{self.owner_path}.{key}"
        return self.owner_path or key

    def say(self, text: str, *, with_key: bool = True) -> str:
        """'job "x": artifacts:paths <text>'; without the key path when `with_key` is False."""
        head = f"{self.owner}: " if self.owner else ""
        if with_key and self.key:
            return f"{head}{self.key} {text}"
        return f"{head}{text}"


def _own_mark(value: Any) -> Mark | None:
    if isinstance(value, (LocMap, LocList, Reference)) and value.mark.line:
        return value.mark
    return None


@dataclass
class Problems:
    """Every diagnostic found so far (errors and warnings)."""

    items: list[Diagnostic] = field(default_factory=list)

    def error(self, at: At, text: str, *, raw: bool = False) -> None:
        self._add(at, text, "error", raw)

    def warning(self, at: At, text: str, *, raw: bool = False) -> None:
        self._add(at, text, "warning", raw)

    def _add(self, at: At, text: str, severity: str, raw: bool) -> None:
        message = at.say(text, with_key=not raw)
        mark = at.mark
        self.items.append(Diagnostic(message, mark.file, mark.line, mark.column, at.path, severity))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity != "error"]

    def __iter__(self) -> Iterator[Diagnostic]:
        return iter(self.items)


# -- readers ----------------------------------------------------------------------


def kind(value: Any) -> str:
    """How a value reads to a user: 'a mapping', 'a list', 'a string'..."""
    return describe(value, quote_strings=False)


def check_keys(value: LocMap, allowed: Collection[str], at: At, problems: Problems, what: str) -> None:
    """One error per key of `value` not in `allowed`, with a did-you-mean hint."""
    for key in value:
        if key not in allowed:
            hint = did_you_mean(str(key), allowed)
            if not hint:
                hint = f"; {what} takes: {', '.join(sorted(allowed))}"
            problems.error(at.of(value, key), f'unknown keyword "{key}" in {what}{hint}', raw=True)


def flat_items(value: list[Any], at: At, depth: int = 1) -> list[tuple[Any, At]]:
    """A list's items, nested lists (from `!reference`) flattened as GitLab does, with their places."""
    out: list[tuple[Any, At]] = []
    for i, item in enumerate(value):
        where = at.of(value, i)
        if isinstance(item, list) and depth < 10:
            out.extend(flat_items(item, where, depth + 1))
        else:
            out.append((item, where))
    return out


def read_map(value: Any, at: At, problems: Problems) -> LocMap | None:
    if isinstance(value, LocMap):
        return value
    if isinstance(value, dict):
        return LocMap(value, mark=at.mark)
    problems.error(at, f"must be a mapping (key: value), got {kind(value)}")
    return None


def read_str(
    value: Any, at: At, problems: Problems, *, numbers: bool = False, empty: bool = True
) -> str | None:
    if isinstance(value, str):
        if not empty and not value.strip():
            problems.error(at, "must not be empty")
            return None
        return value
    if numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    problems.error(at, f"must be a string, got {kind(value)}")
    return None


def read_bool(value: Any, at: At, problems: Problems) -> bool | None:
    if isinstance(value, bool):
        return value
    problems.error(at, f"must be true or false, got {kind(value)}")
    return None


def read_int(value: Any, at: At, problems: Problems, lo: int, hi: int) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        if lo <= value <= hi:
            return value
        problems.error(at, f"must be a whole number from {lo} to {hi}, got {value}")
        return None
    problems.error(at, f"must be a whole number from {lo} to {hi}, got {kind(value)}")
    return None


def read_enum(value: Any, choices: Collection[str], at: At, problems: Problems) -> str | None:
    if isinstance(value, str) and value in choices:
        return value
    shown = f'"{value}"' if isinstance(value, str) else kind(value)
    hint = did_you_mean(value, choices) if isinstance(value, str) else ""
    problems.error(at, f"must be one of {', '.join(choices)}, got {shown}{hint}")
    return None


def read_str_list(
    value: Any, at: At, problems: Problems, *, single: bool = True, numbers: bool = False
) -> tuple[str, ...] | None:
    """A list of strings; a lone string too when `single`."""
    if isinstance(value, str) and single:
        return (value,)
    if not isinstance(value, list):
        what = "a string or a list of strings" if single else "a list of strings"
        problems.error(at, f"must be {what}, got {kind(value)}")
        return None
    out: list[str] = []
    ok = True
    for i, item in enumerate(value):
        if isinstance(item, str):
            out.append(item)
        elif numbers and isinstance(item, (int, float)) and not isinstance(item, bool):
            out.append(str(item))
        else:
            problems.error(at.of(value, i), f"must be a string, got {kind(item)}")
            ok = False
    return tuple(out) if ok else None


def read_exit_codes(value: Any, at: At, problems: Problems) -> tuple[int, ...] | None:
    items = value if isinstance(value, list) else [value]
    out: list[int] = []
    for i, item in enumerate(items):
        where = at.of(value, i) if isinstance(value, list) else at
        code = read_int(item, where, problems, 0, 255)
        if code is None:
            return None
        out.append(code)
    return tuple(out)


def read_duration(value: Any, at: At, problems: Problems, *, never: bool = False) -> float | None:
    """Seconds; None after an error (or for 'never' when allowed: check the raw value)."""
    if never and value == "never":
        return None
    try:
        return parse_duration(value)
    except DurationError as exc:
        problems.error(at, f"is not a duration: {exc}")
        return None


def read_regex(value: Any, at: At, problems: Problems) -> str | None:
    """A GitLab `/pattern/flags` regex; returned raw after checking it compiles."""
    text = read_str(value, at, problems)
    if text is None:
        return None
    body = slash_regex(text)
    if body is None:
        problems.error(
            at, f'must be a regular expression between slashes, like "/Total: (\\d+)%/", got "{text}"'
        )
        return None
    try:
        re.compile(body)
    except re.error as exc:
        problems.error(at, f'"{text}" is not a valid regular expression: {exc}')
        return None
    return text


def slash_regex(text: str) -> str | None:
    """The pattern of '/pattern/flags' as Python syntax, or None when not in slashes."""
    if len(text) < 2 or not text.startswith("/"):
        return None
    end = text.rfind("/")
    if end == 0:
        return None
    flags = text[end + 1 :]
    if any(f not in "imsx" for f in flags):
        return None
    body = text[1:end]
    inline = "".join(f for f in flags if f in "imsx")
    return f"(?{inline}){body}" if inline else body


# -- scripts -------------------------------------------------------------------------


def read_script(value: Any, at: At, problems: Problems, *, required: bool) -> tuple[str, ...] | None:
    """A string, or a list of strings / nested lists (up to 10 levels), flattened."""
    if isinstance(value, str):
        if required and not value.strip():
            problems.error(at, "must not be empty: give the command(s) the job runs")
            return None
        return (value,)
    if not isinstance(value, list):
        problems.error(at, f"must be a string or a list of strings, got {kind(value)}")
        return None
    out: list[str] = []
    if not _flatten_script(value, at, problems, out, 1):
        if len(out) > SCRIPT_MAX_LINES:
            problems.error(at, f"has more than {SCRIPT_MAX_LINES} lines: move the work into a script file")
        return None
    if required and not out:
        problems.error(at, "is empty: give at least one command")
        return None
    return tuple(out)


def _flatten_script(items: list[Any], at: At, problems: Problems, out: list[str], depth: int) -> bool:
    if depth > SCRIPT_MAX_DEPTH:
        problems.error(at, f"nests lists more than {SCRIPT_MAX_DEPTH} levels deep")
        return False
    ok = True
    for i, item in enumerate(items):
        where = at.of(items, i)
        if len(out) > SCRIPT_MAX_LINES:
            return False  # reported once by read_script
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, list):
            ok = _flatten_script(item, where, problems, out, depth + 1) and ok
        elif isinstance(item, dict):
            problems.error(
                where,
                "is a mapping, not a command: quote the line (YAML reads 'word: text' as a key and value)",
            )
            ok = False
        else:
            problems.error(where, f"must be a string (a command), got {kind(item)}: quote it")
            ok = False
    return ok


# -- variables --------------------------------------------------------------------------


def scalar_text(value: Any) -> str | None:
    """GitLab's string form of a YAML scalar variable value (None if not a scalar)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return None


def read_variables(value: Any, at: At, problems: Problems, *, top_level: bool) -> list[Variable]:
    """`variables:` as Variable objects, in file order.

    A value is a scalar (numbers and booleans become strings, null becomes
    "") or a mapping {value, expand, description, options}; `description`
    and `options` only at the top level.
    """
    if value is None:
        return []
    mapping = read_map(value, at, problems)
    if mapping is None:
        return []
    allowed = ("value", "description", "expand", "options") if top_level else ("value", "expand")
    out: list[Variable] = []
    for key, raw in mapping.items():
        where = at.of(mapping, key)
        if not isinstance(key, str) or not key:
            problems.error(where, f"has a key that is not a name: {key!r}")
            continue
        text = scalar_text(raw)
        if text is not None:
            out.append(Variable(key=key, value=text))
            continue
        if not isinstance(raw, dict):
            problems.error(where, f"must be a string, a number or a mapping with 'value', got {kind(raw)}")
            continue
        entry = raw if isinstance(raw, LocMap) else LocMap(raw, mark=where.mark)
        check_keys(entry, allowed, where, problems, f'variable "{key}"')
        val = scalar_text(entry.get("value"))
        if val is None:
            problems.error(where.of(entry, "value"), f"must be a string, got {kind(entry.get('value'))}")
            continue
        expand = True
        if "expand" in entry:
            flag = read_bool(entry["expand"], where.of(entry, "expand"), problems)
            expand = True if flag is None else flag
        if "description" in entry and top_level:
            read_str(entry["description"], where.of(entry, "description"), problems)
        if "options" in entry and top_level:
            options = read_str_list(
                entry["options"], where.of(entry, "options"), problems, single=False, numbers=True
            )
            if options is not None and "value" in entry and val not in options:
                problems.error(
                    where.of(entry, "value"), f'"{val}" must be one of its options: {", ".join(options)}'
                )
        out.append(Variable(key=key, value=val, expand=expand))
    return out


# -- job sub-keywords ---------------------------------------------------------------


def read_allow_failure(value: Any, at: At, problems: Problems) -> tuple[bool, tuple[int, ...]] | None:
    """`allow_failure: bool` or `{exit_codes: int | [int]}` -> (allowed, exit codes: () means any)."""
    if isinstance(value, bool):
        return value, ()
    if isinstance(value, dict):
        mapping = read_map(value, at, problems)
        if mapping is None:
            return None
        check_keys(mapping, ("exit_codes",), at, problems, "allow_failure")
        if "exit_codes" not in mapping:
            problems.error(at, "must be true, false or a mapping with exit_codes")
            return None
        codes = read_exit_codes(mapping["exit_codes"], at.of(mapping, "exit_codes"), problems)
        return None if codes is None else (True, codes)  # allowed to fail with these codes only
    problems.error(at, f"must be true, false or {{exit_codes: [...]}}, got {kind(value)}")
    return None


@dataclass(frozen=True)
class RetrySpec:
    """A job's `retry`, checked."""

    max: int = 0
    when: tuple[str, ...] = ("always",)
    exit_codes: tuple[int, ...] = ()


def read_retry(value: Any, at: At, problems: Problems) -> RetrySpec | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        count = read_int(value, at, problems, 0, 2)
        return None if count is None else RetrySpec(max=count)
    if not isinstance(value, dict):
        problems.error(
            at, f"must be a number from 0 to 2 or a mapping with max/when/exit_codes, got {kind(value)}"
        )
        return None
    mapping = read_map(value, at, problems)
    if mapping is None:
        return None
    check_keys(mapping, ("max", "when", "exit_codes"), at, problems, "retry")
    count = 0
    if "max" in mapping:
        count = read_int(mapping["max"], at.of(mapping, "max"), problems, 0, 2) or 0
    when: tuple[str, ...] = ("always",)
    if "when" in mapping:
        where = at.of(mapping, "when")
        reasons = read_str_list(mapping["when"], where, problems)
        if reasons is not None:
            for i, reason in enumerate(reasons):
                item = where.of(mapping["when"], i) if isinstance(mapping["when"], list) else where
                read_enum(reason, RETRY_WHEN, item, problems)
            when = reasons
    codes: tuple[int, ...] = ()
    if "exit_codes" in mapping:
        codes = read_exit_codes(mapping["exit_codes"], at.of(mapping, "exit_codes"), problems) or ()
        if "when" not in mapping:
            when = ()  # GitLab: `exit_codes` without `when` retries on those exit codes only
    return RetrySpec(max=count, when=when, exit_codes=codes)


def read_image(value: Any, at: At, problems: Problems) -> str | None:
    """`image: name` or `{name, entrypoint, docker, pull_policy}` -> the name."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        mapping = read_map(value, at, problems)
        if mapping is None:
            return None
        check_keys(
            mapping, ("name", "entrypoint", "docker", "pull_policy", "kubernetes"), at, problems, "image"
        )
        if "name" not in mapping:
            problems.error(at, "needs a name")
            return None
        return read_str(mapping["name"], at.of(mapping, "name"), problems)
    problems.error(at, f"must be an image name or a mapping with a name, got {kind(value)}")
    return None


def read_services(value: Any, at: At, problems: Problems) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.error(at, f"must be a list of images, got {kind(value)}")
        return ()
    out: list[str] = []
    for i, item in enumerate(value):
        where = at.of(value, i)
        if isinstance(item, dict):
            mapping = read_map(item, where, problems)
            if mapping is not None and "name" in mapping:
                name = read_str(mapping["name"], where.of(mapping, "name"), problems)
                if name is not None:
                    out.append(name)
            elif mapping is not None:
                problems.error(where, "needs a name")
        else:
            name = read_str(item, where, problems)
            if name is not None:
                out.append(name)
    return tuple(out)


def _opt_str(mapping: LocMap, key: str, at: At, problems: Problems, *, numbers: bool = False) -> str | None:
    if mapping.get(key) is None:
        return None
    return read_str(mapping[key], at.of(mapping, key), problems, numbers=numbers)


def _opt_list(mapping: LocMap, key: str, at: At, problems: Problems) -> tuple[str, ...]:
    if mapping.get(key) is None:
        return ()
    return read_str_list(mapping[key], at.of(mapping, key), problems, numbers=True) or ()


def read_artifacts(value: Any, at: At, problems: Problems) -> Artifacts | None:
    if value is None:
        return None
    mapping = read_map(value, at, problems)
    if mapping is None:
        return None
    check_keys(mapping, ARTIFACTS_KEYS, at, problems, "artifacts")
    paths: tuple[str, ...] = ()
    if mapping.get("paths") is not None:
        paths = (
            read_str_list(mapping["paths"], at.of(mapping, "paths"), problems, single=False, numbers=True)
            or ()
        )
    exclude: tuple[str, ...] = ()
    if mapping.get("exclude") is not None:
        where = at.of(mapping, "exclude")
        exclude = read_str_list(mapping["exclude"], where, problems, single=False, numbers=True) or ()
    untracked = False
    if mapping.get("untracked") is not None:
        untracked = bool(read_bool(mapping["untracked"], at.of(mapping, "untracked"), problems))
    when = "on_success"
    if mapping.get("when") is not None:
        when = read_enum(mapping["when"], ARTIFACTS_WHEN, at.of(mapping, "when"), problems) or when
    expire_in = None
    if mapping.get("expire_in") is not None:
        where = at.of(mapping, "expire_in")
        expire_in = read_str(mapping["expire_in"], where, problems, numbers=True)
        if expire_in is not None and expire_in != "never" and "$" not in expire_in:
            read_duration(expire_in, where, problems)
    name = _opt_str(mapping, "name", at, problems, numbers=True)
    _opt_str(mapping, "expose_as", at, problems)
    if mapping.get("public") is not None:
        read_bool(mapping["public"], at.of(mapping, "public"), problems)
    if mapping.get("access") is not None:
        read_enum(mapping["access"], ARTIFACTS_ACCESS, at.of(mapping, "access"), problems)
    reports = Reports()
    if mapping.get("reports") is not None:
        reports = read_reports(mapping["reports"], at.of(mapping, "reports"), problems)
    return Artifacts(
        paths=paths,
        exclude=exclude,
        untracked=untracked,
        when=when,  # type: ignore[arg-type]
        expire_in=expire_in,
        name=name,
        reports=reports,
    )


def read_reports(value: Any, at: At, problems: Problems) -> Reports:
    mapping = read_map(value, at, problems)
    if mapping is None:
        return Reports()
    check_keys(mapping, REPORT_TYPES, at, problems, "artifacts:reports")
    found: dict[str, tuple[str, ...]] = {}
    other: list[str] = []
    for key, raw in mapping.items():
        if key not in REPORT_TYPES or raw is None:
            continue
        where = at.of(mapping, key)
        if key == "coverage_report":
            report = read_map(raw, where, problems)
            if report is None:
                continue
            check_keys(report, ("coverage_format", "path"), where, problems, "coverage_report")
            if report.get("coverage_format") is not None:
                fmt = report["coverage_format"]
                read_enum(fmt, ("cobertura", "jacoco"), where.of(report, "coverage_format"), problems)
            path = _opt_str(report, "path", where, problems)
            if path is None:
                problems.error(where, "needs a path")
            else:
                other.append(path)
            continue
        files = read_str_list(raw, where, problems)
        if files is None:
            continue
        if key in ("junit", "dotenv", "metrics"):
            found[key] = files
        else:
            other.extend(files)
    return Reports(
        junit=found.get("junit", ()),
        dotenv=found.get("dotenv", ()),
        metrics=found.get("metrics", ()),
        other=tuple(other),
    )


@dataclass(frozen=True)
class CacheSpec:
    """One cache entry; `policy` raw because GitLab lets it be a `$VARIABLE`."""

    cache: Cache
    policy: str
    at: At


def read_cache(value: Any, at: At, problems: Problems) -> list[CacheSpec]:
    if value is None:
        return []
    if isinstance(value, list):
        items = flat_items(value, at)  # `- !reference [.x, cache]` items may be lists: GitLab flattens them
        if len(items) > 4:
            problems.error(at, f"has {len(items)} entries; GitLab allows at most 4 caches per job")
        out: list[CacheSpec] = []
        for item, where in items:
            spec = _read_one_cache(item, where, problems)
            if spec is not None:
                out.append(spec)
        return out
    spec = _read_one_cache(value, at, problems)
    return [] if spec is None else [spec]


def _read_one_cache(value: Any, at: At, problems: Problems) -> CacheSpec | None:
    mapping = read_map(value, at, problems)
    if mapping is None:
        return None
    check_keys(mapping, CACHE_KEYS, at, problems, "cache")
    key = "default"
    key_files: tuple[str, ...] = ()
    key_prefix: str | None = None
    raw_key = mapping.get("key")
    if raw_key is not None:
        where = at.of(mapping, "key")
        if isinstance(raw_key, dict):
            key_map = read_map(raw_key, where, problems)
            if key_map is not None:
                check_keys(key_map, ("files", "prefix"), where, problems, "cache:key")
                if key_map.get("files") is None:
                    problems.error(where, "needs files: the list of files whose content makes the key")
                else:
                    files_at = where.of(key_map, "files")
                    key_files = read_str_list(key_map["files"], files_at, problems, single=False) or ()
                    if not 1 <= len(key_files) <= 2 and key_files:
                        problems.error(files_at, f"must list 1 or 2 files, got {len(key_files)}")
                key_prefix = _opt_str(key_map, "prefix", where, problems, numbers=True)
        else:
            text = read_str(raw_key, where, problems, numbers=True)
            if text is not None:
                if (
                    "/" in text
                    or text in (".", "..")
                    or "%2F" in text.upper()
                    or text.upper() in ("%2E", "%2E%2E")
                ):
                    problems.error(where, f'"{text}" cannot contain "/" or be "." or ".."')
                elif len(text) > MAX_NAME and "$" not in text:
                    problems.error(
                        where,
                        f"is {len(text)} characters long; at most {MAX_NAME} (it names the cache's folder)",
                    )
                key = text
    paths: tuple[str, ...] = ()
    if mapping.get("paths") is not None:
        paths = (
            read_str_list(mapping["paths"], at.of(mapping, "paths"), problems, single=False, numbers=True)
            or ()
        )
    untracked = False
    if mapping.get("untracked") is not None:
        untracked = bool(read_bool(mapping["untracked"], at.of(mapping, "untracked"), problems))
    policy = "pull-push"
    if mapping.get("policy") is not None:
        where = at.of(mapping, "policy")
        raw_policy = read_str(mapping["policy"], where, problems)
        if raw_policy is not None:
            if "$" in raw_policy:
                policy = raw_policy
            else:
                policy = read_enum(raw_policy, CACHE_POLICIES, where, problems) or policy
    when = "on_success"
    if mapping.get("when") is not None:
        when = read_enum(mapping["when"], ARTIFACTS_WHEN, at.of(mapping, "when"), problems) or when
    fallback = _opt_list(mapping, "fallback_keys", at, problems)
    if len(fallback) > 5:
        problems.error(at.of(mapping, "fallback_keys"), f"has {len(fallback)} keys; GitLab allows at most 5")
    if mapping.get("unprotect") is not None:
        read_bool(mapping["unprotect"], at.of(mapping, "unprotect"), problems)
    cache = Cache(
        key=key,
        key_files=key_files,
        key_prefix=key_prefix,
        paths=paths,
        untracked=untracked,
        when=when,  # type: ignore[arg-type]
        fallback_keys=fallback,
    )
    return CacheSpec(cache=cache, policy=policy, at=at.of(mapping, "policy") if "policy" in mapping else at)


def read_environment(value: Any, at: At, problems: Problems) -> tuple[Environment, At | None] | None:
    """The environment, and where its `on_stop` is (checked against the jobs later)."""
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            problems.error(at, "must not be empty")
            return None
        if len(value) > MAX_NAME:
            problems.error(at, f"is {len(value)} characters long; GitLab allows {MAX_NAME}")
        return Environment(name=value), None
    mapping = read_map(value, at, problems)
    if mapping is None:
        return None
    check_keys(mapping, ENVIRONMENT_KEYS, at, problems, "environment")
    name = _opt_str(mapping, "name", at, problems, numbers=True)
    if name is None or not name.strip():
        if "name" not in mapping:
            problems.error(at, "needs a name")
        elif name is not None:
            problems.error(at.of(mapping, "name"), "must not be empty")
        return None
    action = "start"
    if mapping.get("action") is not None:
        action = read_enum(mapping["action"], ENV_ACTIONS, at.of(mapping, "action"), problems) or action
    tier = None
    if mapping.get("deployment_tier") is not None:
        tier = read_enum(
            mapping["deployment_tier"], DEPLOYMENT_TIERS, at.of(mapping, "deployment_tier"), problems
        )
    auto_stop_in = _opt_str(mapping, "auto_stop_in", at, problems, numbers=True)
    if auto_stop_in is not None and auto_stop_in != "never" and "$" not in auto_stop_in:
        read_duration(auto_stop_in, at.of(mapping, "auto_stop_in"), problems)
    on_stop = _opt_str(mapping, "on_stop", at, problems)
    if len(name) > MAX_NAME:
        problems.error(at.of(mapping, "name"), f"is {len(name)} characters long; GitLab allows {MAX_NAME}")
    env = Environment(
        name=name,
        url=_opt_str(mapping, "url", at, problems),
        action=action,  # type: ignore[arg-type]
        deployment_tier=tier,
        on_stop=on_stop,
        auto_stop_in=auto_stop_in,
    )
    return env, (at.of(mapping, "on_stop") if on_stop is not None else None)
