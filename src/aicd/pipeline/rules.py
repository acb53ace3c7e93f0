"""`rules:` evaluation (jobs, `workflow:rules`, `include:rules`) and its lint.

GitLab's documented semantics:

- Rules are tried in order; the first rule whose clauses (`if`, `changes`,
  `exists`, those present) are all true wins. A rule with no clause matches.
  No rule matches: the job is not added (`when: never`).
- The winning rule's `when` (default: the job's own `when`), `allow_failure`,
  `variables`, `needs`, `start_in` and `interruptible` apply.
- `changes` matches when a changed file matches one of the globs. Without a
  push diff (`changed_files` None) it is always true, as in GitLab for
  pipelines that are not triggered by a push.
- `exists` matches when a file of the project matches one of the globs.
  GitLab does at most 10,000 pattern checks; past that, patterned globs
  match (exact paths are still checked).
- Globs follow Ruby's `File.fnmatch` with `FNM_PATHNAME | FNM_DOTMATCH |
  FNM_EXTGLOB`, which GitLab uses: `*` and `?` do not cross `/`, `**/`
  matches zero or more directories, `{a,b}` alternatives, dot files match,
  `[set]` classes, `\\x` escapes. CI/CD variables in globs are expanded.
- Nested lists (from `!reference`) are flattened, as GitLab does.
"""

from __future__ import annotations

import functools
import itertools
import json
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aicd.errors import AicdError, Diagnostic, ExpressionError, PipelineError
from aicd.pipeline.nodes import NO_MARK, LocList, LocMap, Mark, Reference, describe
from aicd.pipeline.variables import expand
from aicd.vcs import walk_files

RULE_KEYS = (
    "if",
    "changes",
    "exists",
    "when",
    "allow_failure",
    "variables",
    "needs",
    "start_in",
    "interruptible",
)
RULE_WHEN = ("on_success", "on_failure", "always", "manual", "delayed", "never")
EXISTS_CHECK_LIMIT = 10_000


class ChangedFiles:
    """The files the pipeline's commit changed, found the first time a `changes` clause asks for
    them: a pipeline without one never pays for the `git diff` (a process, ~2-4 ms of a run's
    start). ``compute`` returns the files, or None when they are unknown (`changes` always true);
    its errors are raised where the clause is evaluated."""

    __slots__ = ("_compute", "_done", "_value")

    def __init__(self, compute: Callable[[], Sequence[str] | None]) -> None:
        self._compute = compute
        self._value: Sequence[str] | None = None
        self._done = False

    def get(self) -> Sequence[str] | None:
        if not self._done:
            self._value = self._compute()
            self._done = True
        return self._value


def changed_files_of(changed: Sequence[str] | ChangedFiles | None) -> Sequence[str] | None:
    """The changed files, computing them now if they were given as a :class:`ChangedFiles`."""
    return changed.get() if isinstance(changed, ChangedFiles) else changed


@dataclass(frozen=True)
class RuleContext:
    """What `rules` are evaluated against: variables, files, changes."""

    variables: Mapping[str, str]
    project_dir: Path | None = None
    # Files changed by the pipeline's push (or how to find them); None: `changes` is always true.
    changed_files: Sequence[str] | ChangedFiles | None = None
    # Project files `exists` checks (relative POSIX paths); None: walk project_dir.
    files: Sequence[str] | None = None
    # Files changed since a ref, for `changes:compare_to` (None result: always true).
    # Without it, compare_to falls back to `changed_files`.
    changes_since: Callable[[str], Sequence[str] | None] | None = None
    _cache: dict[Path, list[str]] = field(default_factory=dict, init=False, compare=False, repr=False)

    def project_files(self) -> Sequence[str]:
        """The files `exists` checks: `files`, else those under project_dir (walked once)."""
        if self.files is not None:
            return self.files
        if self.project_dir is None:
            return ()
        cached = self._cache.get(self.project_dir)
        if cached is None:
            cached = self._cache[self.project_dir] = walk_files(self.project_dir)
        return cached


@dataclass(frozen=True)
class RuleOutcome:
    """What the rules give a job: its `when` (never: not in the pipeline) and what the matching rule sets."""

    when: str
    allow_failure: bool | None = None
    variables: Mapping[str, Any] | None = None
    needs: Any = None
    start_in: str | None = None
    interruptible: bool | None = None
    rule_index: int | None = None
    rule_text: str = field(
        default="", compare=False
    )  # the matching rule's conditions, for listings ("if: $CI_COMMIT_TAG")


# --- evaluation ------------------------------------------------------------------


def evaluate_rules(
    rules: Sequence[Any], ctx: RuleContext, *, default_when: str = "on_success", where: str = "rules"
) -> RuleOutcome:
    """The outcome of the first matching rule; `when="never"` when none matches.

    Raises PipelineError (every problem found, with file:line:col) when the
    rules are malformed.
    """
    errors = [d for d in check_rules(rules, where) if d.severity == "error"]
    if errors:
        raise PipelineError(errors)
    for index, (rule, path, _mark) in enumerate(_flatten(rules, where)):
        if _matches(rule, ctx, path):
            start_in = rule.get("start_in")
            return RuleOutcome(
                when=str(rule.get("when", default_when)),
                allow_failure=rule.get("allow_failure"),
                variables=rule.get("variables"),
                needs=rule.get("needs"),
                start_in=None if start_in is None else str(start_in),
                interruptible=rule.get("interruptible"),
                rule_index=index,
                rule_text=describe_rule(rule),
            )
    return RuleOutcome(when="never")


def describe_rule(rule: Mapping[str, Any], limit: int = 80) -> str:
    """A rule's conditions in one line: `if: $X == "y", changes: [a/*]`; `(no condition)` when it has none."""
    parts: list[str] = []
    for key in ("if", "changes", "exists"):
        if key in rule and rule[key] is not None:
            value = rule[key]
            text = str(value) if isinstance(value, str) else json.dumps(value, default=str)
            parts.append(f"{key}: {text}")
    out = ", ".join(parts) or "(no condition)"
    return out if len(out) <= limit else out[: limit - 3] + "..."


def _matches(rule: Mapping[str, Any], ctx: RuleContext, path: str) -> bool:
    if "if" in rule:
        # the rules:if language: imported by the pipelines that use it (`aicd run` start-up)
        from aicd.pipeline.expression import evaluate_tree, parse

        try:
            if not evaluate_tree(parse(rule["if"]), ctx.variables):
                return False
        except ExpressionError as exc:
            raise PipelineError(_diag(f"{path}.if: {exc}", _mark(rule, "if"), f"{path}.if")) from None
    if "changes" in rule and not _changes_match(rule, ctx, path):
        return False
    return not ("exists" in rule and not _exists_match(rule["exists"], ctx))


def _changes_match(rule: Mapping[str, Any], ctx: RuleContext, path: str) -> bool:
    spec = rule["changes"]
    files = changed_files_of(ctx.changed_files)
    paths = spec
    if isinstance(spec, Mapping):
        paths = spec.get("paths") or []
        compare_to = spec.get("compare_to")
        if compare_to is not None and ctx.changes_since is not None:
            ref = expand(str(compare_to), ctx.variables)
            try:
                files = ctx.changes_since(ref)
            except AicdError as exc:
                raise PipelineError(
                    _diag(
                        f"{path}.changes.compare_to: cannot compare with {ref!r}: {exc}",
                        _mark(spec, "compare_to"),
                        f"{path}.changes.compare_to",
                    )
                ) from None
    if files is None:
        return True
    patterns = [expand(str(p), ctx.variables) for p in paths]
    return any(glob_match(p, f) for p in patterns if p for f in files)


def _exists_match(spec: Any, ctx: RuleContext) -> bool:
    paths = (spec.get("paths") or []) if isinstance(spec, Mapping) else spec
    patterns = [expand(str(p), ctx.variables) for p in paths]
    patterns = [p for p in patterns if p]
    if not patterns:
        return False
    exact = [p for p in patterns if not has_magic(p)]
    globs = [p for p in patterns if has_magic(p)]
    if exact:
        if ctx.files is not None:
            known = set(ctx.files)
            if any(posixpath.normpath(p) in known for p in exact):
                return True
        elif ctx.project_dir is not None:
            for p in exact:
                norm = posixpath.normpath(p)
                if _is_project_path(norm) and (ctx.project_dir / norm).is_file():
                    return True
    if not globs:
        return False
    files = ctx.project_files()
    checks = 0
    for f in files:
        for g in globs:
            checks += 1
            if checks > EXISTS_CHECK_LIMIT:
                return True  # GitLab's limit: patterned globs match past it
            if glob_match(g, f):
                return True
    return False


def _is_project_path(norm: str) -> bool:
    """A normalised relative path inside the project, not in `.git` or `.aicd`."""
    first = norm.split("/", 1)[0]
    return not norm.startswith("/") and first not in ("..", ".git", ".aicd", ".")


# --- globs -------------------------------------------------------------------------

_MAGIC = re.compile(r"[*?\[{\\]")


def has_magic(pattern: str) -> bool:
    return _MAGIC.search(pattern) is not None


def glob_match(pattern: str, path: str) -> bool:
    """Ruby `File.fnmatch(pattern, path, FNM_PATHNAME | FNM_DOTMATCH | FNM_EXTGLOB)`."""
    return compile_glob(pattern).match(path) is not None


@functools.lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> re.Pattern[str]:
    alternatives = [_translate_glob(p) for p in expand_braces(pattern)]
    return re.compile(f"(?:{'|'.join(alternatives)})\\Z", re.DOTALL)


def expand_braces(pattern: str) -> list[str]:
    """`a{b,c{d,e}}` -> `ab`, `acd`, `ace`; unbalanced braces stay literal."""
    depth = 0
    start = -1
    commas: list[int] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            if depth == 0:
                start = i
                commas = []
            depth += 1
        elif ch == "," and depth == 1:
            commas.append(i)
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                prefix, suffix = pattern[:start], pattern[i + 1 :]
                bounds = [start, *commas, i]
                out: list[str] = []
                for a, b in itertools.pairwise(bounds):
                    out.extend(expand_braces(prefix + pattern[a + 1 : b] + suffix))
                return out
        i += 1
    return [pattern]


def _translate_glob(pattern: str) -> str:
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if pattern.startswith("**/", i) and (i == 0 or pattern[i - 1] == "/"):
                out.append("(?:[^/]*/)*")
                i += 3
                continue
            while i < n and pattern[i] == "*":
                i += 1
            out.append("[^/]*")
            continue
        if ch == "?":
            out.append("[^/]")
        elif ch == "[":
            cls, end = _translate_class(pattern, i)
            if cls is not None:
                out.append(cls)
                i = end
                continue
            out.append(re.escape(ch))
        elif ch == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def _translate_class(pattern: str, start: int) -> tuple[str | None, int]:
    """`[...]` at `start` as a regex class that never matches `/`; (None, start) if unterminated."""
    i = start + 1
    n = len(pattern)
    negate = i < n and pattern[i] in "!^"
    if negate:
        i += 1
    body: list[str] = []
    first = True
    while i < n:
        ch = pattern[i]
        if ch == "]" and not first:
            inner = "".join(body)
            return (f"(?!/)[{'^' if negate else ''}{inner}]", i + 1)
        if ch == "\\" and i + 1 < n:
            body.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            body.append("-" if ch == "-" else re.escape(ch))
            i += 1
        first = False
    return (None, start)


# --- lint ----------------------------------------------------------------------------


def check_rules(rules: Any, where: str) -> list[Diagnostic]:
    """Every problem in the shape of `rules` (no evaluation), for lint and before evaluation."""
    if rules is None:
        return []
    if isinstance(rules, Reference):
        return [_diag(f"{where}: unresolved !reference {list(rules.path)}", rules.mark, where)]
    if not isinstance(rules, list):
        return [
            _diag(
                f"{where}: rules must be a list, such as `- if: $CI_COMMIT_BRANCH`, not {_kind(rules)}",
                _mark_of_value(rules),
                where,
            )
        ]
    out: list[Diagnostic] = []
    for rule, path, mark in _flatten(rules, where):
        out.extend(_check_rule(rule, path, mark))
    return out


def _flatten(rules: Sequence[Any], where: str) -> Iterator[tuple[Any, str, Mark]]:
    for i, item in enumerate(rules):
        path = f"{where}[{i}]"
        if isinstance(item, list):
            yield from _flatten(item, path)
        else:
            mark = rules.mark_of(i) if isinstance(rules, LocList) else NO_MARK
            yield item, path, _mark_of_value(item, mark)


def _check_rule(rule: Any, path: str, mark: Mark) -> list[Diagnostic]:
    if isinstance(rule, Reference):
        return [_diag(f"{path}: unresolved !reference {list(rule.path)}", rule.mark, path)]
    if not isinstance(rule, Mapping):
        return [
            _diag(
                f"{path}: a rule must be a mapping such as `- if: $CI_COMMIT_BRANCH`, not {_kind(rule)}",
                mark,
                path,
            )
        ]
    out: list[Diagnostic] = []

    def problem(key: str, message: str, severity: str = "error") -> None:
        out.append(_diag(f"{path}.{key}: {message}", _mark(rule, key), f"{path}.{key}", severity))

    allowed = (*RULE_KEYS, "auto_cancel") if path.startswith("workflow") else RULE_KEYS
    for key in rule:
        if key not in allowed:
            problem(str(key), f"unknown rule key '{key}'; allowed keys: {', '.join(allowed)}")
    if "if" in rule:
        expr = rule["if"]
        if not isinstance(expr, str):
            problem("if", f"must be an expression string such as '$CI_COMMIT_BRANCH', not {_kind(expr)}")
        else:
            from aicd.pipeline.expression import parse

            try:
                parse(expr)
            except ExpressionError as exc:
                problem("if", str(exc))
    if "changes" in rule:
        _check_paths(rule["changes"], ("paths", "compare_to"), problem, "changes")
    if "exists" in rule:
        spec = rule["exists"]
        _check_paths(spec, ("paths", "project", "ref"), problem, "exists")
        if isinstance(spec, Mapping) and ("project" in spec or "ref" in spec):
            problem(
                "exists",
                "exists:project and exists:ref are not supported locally; "
                "the paths are checked in this project",
                "warning",
            )
    when = rule.get("when")
    if "when" in rule and when not in RULE_WHEN:
        problem("when", f"unknown when {when!r}; use one of {', '.join(RULE_WHEN)}")
    for key in ("allow_failure", "interruptible"):
        if key in rule and not isinstance(rule[key], bool):
            problem(key, f"must be true or false, not {_kind(rule[key])}")
    if "variables" in rule:
        _check_variables(rule["variables"], problem)
    if "needs" in rule and not isinstance(rule["needs"], list):
        problem("needs", f"must be a list of job names, not {_kind(rule['needs'])}")
    if "start_in" in rule:
        start_in = rule["start_in"]
        if isinstance(start_in, bool) or not isinstance(start_in, (str, int)):
            problem("start_in", f"must be a duration such as '30 minutes', not {_kind(start_in)}")
        elif "when" in rule and when != "delayed":
            problem("start_in", f"start_in only applies with when: delayed, not when: {when}", "warning")
    return out


def _check_paths(spec: Any, keys: tuple[str, ...], problem: Callable[..., None], name: str) -> None:
    paths = spec
    if isinstance(spec, Mapping):
        for key in spec:
            if key not in keys:
                problem(name, f"unknown key '{key}'; allowed keys: {', '.join(keys)}")
        if "paths" not in spec:
            problem(name, "needs a `paths:` list of globs")
            return
        paths = spec["paths"]
        if name == "changes" and "compare_to" in spec and not isinstance(spec["compare_to"], str):
            problem(name, f"compare_to must be a branch, tag or commit SHA, not {_kind(spec['compare_to'])}")
    if not isinstance(paths, list):
        problem(name, f"must be a list of file globs, such as ['src/**/*.py'], not {_kind(paths)}")
        return
    for item in paths:
        if not isinstance(item, str):
            problem(name, f"every path must be a string, not {_kind(item)} ({item!r})")


def _check_variables(spec: Any, problem: Callable[..., None]) -> None:
    if not isinstance(spec, Mapping):
        problem("variables", f"must be a mapping of NAME: value, not {_kind(spec)}")
        return
    for key, value in spec.items():
        ok = value is None or isinstance(value, (str, int, float, bool))
        if isinstance(value, Mapping):
            ok = "value" in value
        if not ok:
            problem("variables", f"{key}: a variable value must be a string or number, not {_kind(value)}")


# --- helpers ---------------------------------------------------------------------------


def _mark(container: Any, key: str) -> Mark:
    if isinstance(container, LocMap):
        return container.mark_of(key)
    return NO_MARK


def _mark_of_value(value: Any, default: Mark = NO_MARK) -> Mark:
    if isinstance(value, (LocMap, LocList, Reference)) and value.mark != NO_MARK:
        return value.mark
    return default


def _diag(message: str, mark: Mark, path: str, severity: str = "error") -> Diagnostic:
    return Diagnostic(message, mark.file, mark.line, mark.column, path, severity)


_kind = describe
