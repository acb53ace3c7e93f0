"""The resolved YAML document -> the validated, frozen :class:`Pipeline`.

Input: the top-level mapping the loader made (includes merged, `extends`
and `!reference` resolved, `default:` applied, `inherit` kept in jobs), and
the run's context. Output: a :class:`BuildResult` holding every problem
found (errors and warnings, each located) and, when there is no error, the
pipeline. Nothing here raises for bad input.

Order of work (GitLab's): stages, global variables, `workflow`, each job's
keywords, `parallel` expansion, `rules` / `only` / `except` per instance,
then `needs` and `dependencies` across jobs, then cycles.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aicd.errors import Diagnostic, ExpressionError, PipelineError
from aicd.pipeline import parallel
from aicd.pipeline.ir import (
    DEFAULT_STAGES,
    Cache,
    Environment,
    Job,
    Location,
    Need,
    Pipeline,
    Retry,
    Trigger,
    Variable,
)
from aicd.pipeline.nodes import LocList, LocMap, Mark, Reference
from aicd.pipeline.rules import (
    ChangedFiles,
    RuleContext,
    changed_files_of,
    check_rules,
    evaluate_rules,
    glob_match,
)
from aicd.pipeline.schema import (
    CACHE_POLICIES,
    DEFAULT_KEYWORDS,
    IGNORED_JOB_KEYWORDS,
    JOB_KEYWORDS,
    JOB_WHEN,
    TOP_LEVEL_KEYWORDS,
    TRIGGER_KEYS,
    WORKFLOW_KEYWORDS,
    At,
    CacheSpec,
    Problems,
    RetrySpec,
    check_keys,
    flat_items,
    kind,
    read_allow_failure,
    read_artifacts,
    read_bool,
    read_cache,
    read_duration,
    read_enum,
    read_environment,
    read_image,
    read_map,
    read_regex,
    read_retry,
    read_script,
    read_services,
    read_str,
    read_str_list,
    read_variables,
)
from aicd.pipeline.variables import expand, resolve
from aicd.suggest import HintBudget, did_you_mean

MAX_NEEDS = 50
MAX_JOB_NAME = 255
MAX_START_IN_S = 7 * 86400.0
_DEPRECATED_GLOBALS = ("image", "services", "cache", "before_script", "after_script")


@dataclass(frozen=True)
class BuildContext:
    """What building a pipeline needs beyond its YAML."""

    predefined: Sequence[Variable] = ()
    variables: Sequence[Variable] = ()  # pipeline variables (CLI...)
    changed_files: Sequence[str] | ChangedFiles | None = None
    project_dir: Path | None = None
    file: str = ".gitlab-ci.yml"
    changes_since: Callable[[str], Sequence[str] | None] | None = None
    child_pipelines: bool = False  # build trigger jobs of local child pipelines (see PipelineContext)


@dataclass
class BuildResult:
    """A built pipeline, or the problems found, and what was built anyway."""

    diagnostics: list[Diagnostic]
    pipeline: Pipeline | None = None
    filtered_out: bool = False  # workflow:rules made no pipeline
    listing: Listing | None = None  # what was built, even with errors (None: the file could not be read)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


@dataclass
class Listing:
    """The jobs as far as they could be built, with why each is in (for `aicd lint --list`)."""

    stages: tuple[str, ...]
    jobs: list[Job]  # after rules, needs resolved; may hold jobs with errors
    # trigger jobs left out of the run: (job, the needs it names, what it triggers)
    triggers: list[tuple[Job, tuple[str, ...] | None, str]]
    included: dict[str, str]  # job name -> the rule (or only/except) that put it in
    excluded: list[tuple[str, str]]  # job name -> why it is left out
    workflow_rule: str | None  # the workflow rule that made the pipeline (None: no workflow:rules)


@dataclass
class NeedSpec:
    """One `needs` entry, checked, before the job it names is resolved."""

    job: str
    at: At
    artifacts: bool = True
    optional: bool = False
    matrix: list[parallel.Combination] | None = None
    external: str | None = None  # 'project' / 'pipeline': cross-pipeline needs, ignored


class Draft:
    """One YAML job, its keywords checked and typed (a plain class: cheaper to import than a dataclass)."""

    def __init__(self, name: str, at: At, body: LocMap) -> None:
        self.name = name
        self.at = at
        self.body = body
        self.variables: list[Variable] = []
        self.caches: list[CacheSpec] = []

    stage: str = "test"
    stage_at: At | None = None
    before_script: tuple[str, ...] = ()
    script: tuple[str, ...] = ()
    after_script: tuple[str, ...] = ()
    inherit_variables: bool | tuple[str, ...] = True
    when: str = "on_success"
    when_at: At | None = None
    start_in: float | None = None
    start_in_at: At | None = None
    allow_failure: bool | None = None
    exit_codes: tuple[int, ...] = ()
    needs: list[NeedSpec] | None = None
    dependencies: list[tuple[str, At]] | None = None
    retry: RetrySpec | None = None
    timeout: float | None = None
    parallel: parallel.ParallelSpec | None = None
    artifacts: Any = None
    environment: Environment | None = None
    on_stop_at: At | None = None
    resource_group: str | None = None
    interruptible: bool = False
    coverage: str | None = None
    image: str | None = None
    services: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    rules: Any = None
    has_rules: bool = False
    rules_ok: bool = True
    trigger: bool = False
    child: Trigger | None = None  # a local child pipeline aicd can run
    trigger_kind: str = ""  # why another trigger is left out: "project", "dynamic", "include"


@dataclass
class Built:
    """One job instance with its rule outcome applied, before needs are resolved."""

    draft: Draft
    instance: parallel.Instance
    job: Job
    needs: list[NeedSpec] | None
    needs_at: At


def build_pipeline(root: Any, ctx: BuildContext, loader_warnings: Sequence[Diagnostic] = ()) -> BuildResult:
    """Check and build the pipeline; every problem is in the result, nothing raises for bad input."""
    problems = Problems(list(loader_warnings))
    builder = _Builder(root, ctx, problems)
    pipeline = builder.run()
    items = _dedupe(problems.items, builder.root)
    listing = Listing(
        stages=builder.stages,
        jobs=builder.jobs,
        triggers=builder.triggers,
        included=builder.included,
        excluded=builder.excluded,
        workflow_rule=builder.workflow_rule,
    )
    if any(d.severity == "error" for d in items):
        return BuildResult(items, None, False, listing)
    return BuildResult(items, pipeline, builder.filtered_out, listing)


def _dedupe(items: list[Diagnostic], root: Any = None) -> list[Diagnostic]:
    """One diagnostic per place and problem.

    A problem inside a template (a hidden key, `default:`, an anchor, or a job
    that others `extends` or `!reference`) shows once, named after that
    template and the jobs that use it, not once per job.
    """
    owners = _TopLevelKeys(root)
    groups: dict[tuple[str, int, int, str, str], list[str]] = {}
    out: list[tuple[tuple[str, int, int, str, str], Diagnostic]] = []
    for d in items:
        job, text = _job_and_text(d.message)
        key = (d.file, d.line, d.column, text, d.severity)
        if d.line and key in groups:
            if job is not None and job not in groups[key]:
                groups[key].append(job)
            continue
        groups[key] = [] if job is None else [job]
        out.append((key, d))
    result: list[Diagnostic] = []
    for key, d in out:
        jobs = groups[key]
        owner = owners.at(d.file, d.line, d.column) if jobs and d.line else None
        if owner is None or (owner in jobs and len(jobs) == 1):
            result.append(d)
            continue
        text = key[3]
        if owner == "default":
            head = f"default (inherited by {_jobs_phrase(jobs)})"
        elif owner.startswith("."):
            head = f'template "{owner}" (used by {_jobs_phrase(jobs)})'
        else:
            others = [j for j in jobs if j != owner]
            if not others:
                result.append(d)
                continue
            head = f'job "{owner}" (also used by {_jobs_phrase(others)})'
        result.append(dataclasses.replace(d, message=f"{head}: {text}"))
    return result


def _job_and_text(message: str) -> tuple[str | None, str]:
    """('name', rest) for a message 'job "name": rest', else (None, message)."""
    if message.startswith('job "') and '": ' in message:
        name, _, rest = message[5:].partition('": ')
        return name, rest
    return None, message


def _jobs_phrase(jobs: list[str]) -> str:
    quoted = [f'"{j}"' for j in jobs]
    return f"job {quoted[0]}" if len(quoted) == 1 else f"jobs {_names(quoted)}"


class _TopLevelKeys:
    """Which top-level key (job, template, `default`) a file:line is written in."""

    def __init__(self, root: Any) -> None:
        self.starts: dict[str, list[tuple[int, str]]] = {}
        self.root: LocMap = root if isinstance(root, LocMap) else LocMap()
        if isinstance(root, LocMap):
            for key in root:
                mark = root.mark_of(key)
                if isinstance(key, str) and mark.line:
                    self.starts.setdefault(mark.file, []).append((mark.line, key))
        for found in self.starts.values():
            found.sort()

    def at(self, file: str, line: int, column: int) -> str | None:
        """The key whose text holds this place: the nearest key above it, if its value has a value there."""
        found = self.starts.get(file)
        if not found:
            return None
        i = bisect.bisect_right(found, (line, "\U0010ffff")) - 1
        if i < 0:
            return None
        key = found[i][1]
        return key if _holds_mark(self.root[key], file, line, column) else None


def _holds_mark(value: Any, file: str, line: int, column: int, depth: int = 0) -> bool:
    """Whether a key, item or value inside `value` is written at file:line:column."""
    if depth > 40:
        return False
    if isinstance(value, (LocMap, LocList, Reference)):
        mark = value.mark
        if (mark.file, mark.line, mark.column) == (file, line, column):
            return True
    if isinstance(value, LocMap):
        for key, item in value.items():
            mark = value.mark_of(key)
            if (mark.file, mark.line, mark.column) == (file, line, column):
                return True
            if _holds_mark(item, file, line, column, depth + 1):
                return True
    elif isinstance(value, LocList):
        for index, item in enumerate(value):
            mark = value.mark_of(index)
            if (mark.file, mark.line, mark.column) == (file, line, column):
                return True
            if _holds_mark(item, file, line, column, depth + 1):
                return True
    return False


class _Builder:
    def __init__(self, root: Any, ctx: BuildContext, problems: Problems) -> None:
        self.root = root
        self.ctx = ctx
        self.problems = problems
        self.hint = HintBudget()  # did-you-mean over the job names: bounded work in a huge file
        self._names: list[str] | None = None
        self.filtered_out = False
        self.file_at = At(Mark(ctx.file, 1, 1))
        self.summary_at = At(Mark(ctx.file, 0, 0))  # pipeline-wide notes: no line
        self.stages: tuple[str, ...] = DEFAULT_STAGES
        self.global_vars: list[Variable] = []
        self.workflow_vars: list[Variable] = []
        self.workflow_name: str | None = None
        self.drafts: list[Draft] = []
        self.defined: dict[str, Draft] = {}
        self.excluded: list[tuple[str, str]] = []
        self.warn_jobs: dict[str, list[str]] = {}
        self.jobs: list[Job] = []
        self.triggers: list[tuple[Job, tuple[str, ...] | None, str]] = []
        self.included: dict[str, str] = {}
        self.workflow_rule: str | None = None

    # -- top level ---------------------------------------------------------------

    def run(self) -> Pipeline | None:
        root = self.root
        if root is None or (isinstance(root, dict) and not root):
            self.problems.error(self.file_at, "the file holds no jobs: add a job with a script", raw=True)
            return None
        if not isinstance(root, LocMap):
            if isinstance(root, dict):
                root = LocMap(root, mark=self.file_at.mark)
            else:
                self.problems.error(
                    self.file_at,
                    "the file must be a mapping of jobs and keywords (job: {script: ...}), "
                    f"got {kind(root)}",
                    raw=True,
                )
                return None
        self.root = root
        self._stages(root)
        if "variables" in root:
            self.global_vars = read_variables(
                root["variables"], self.file_at.of(root, "variables"), self.problems, top_level=True
            )
        self._default(root)
        self._workflow(root)
        for key, value in root.items():
            if not isinstance(key, str):
                self.problems.error(
                    self.file_at.of(root, key), f"a top-level key must be a name, got {key!r}"
                )
                continue
            if key in TOP_LEVEL_KEYWORDS or key.startswith("."):
                continue
            self._draft(key, value, root)
        if not self.drafts and not self.problems.errors:
            self.problems.error(
                self.file_at,
                "the file defines no job: add a job (a name with a script) outside `.hidden` keys",
                raw=True,
            )
        built = self._instances()
        jobs = self._resolve_needs(built)
        self.jobs = jobs
        self._check_cycles(jobs)
        self._summary_warnings(jobs)
        if self.filtered_out or self.problems.errors:
            return None
        order = {stage: i for i, stage in enumerate(self.stages)}
        jobs.sort(key=lambda j: order.get(j.stage, 0))  # stable: file order within a stage
        return Pipeline(
            stages=self.stages,
            jobs=tuple(jobs),
            variables=tuple(self.ctx.variables),
            predefined=tuple(self.ctx.predefined),
            name=self.workflow_name,
            file=self.ctx.file,
            warnings=tuple(_warning_text(d) for d in self.problems.warnings),
            excluded=tuple(self.excluded),
        )

    def _stages(self, root: LocMap) -> None:
        key = "stages" if "stages" in root else ("types" if "types" in root else None)
        if key is None:
            return
        at = self.file_at.of(root, key)
        if key == "types":
            self.problems.warning(at, "types is deprecated: use stages", raw=True)
        value = root[key]
        if value is None:
            return
        names = read_str_list(value, at, self.problems, single=False)
        if names is None:
            return
        user = []
        for i, name in enumerate(names):
            if not name.strip():
                self.problems.error(at.of(value, i), "must not be empty")
            elif name not in (".pre", ".post") and name not in user:
                user.append(name)
        self.stages = (".pre", *user, ".post")

    def _default(self, root: LocMap) -> None:
        if "default" not in root or root["default"] is None:
            return
        at = self.file_at.of(root, "default")
        mapping = read_map(root["default"], at, self.problems)
        if mapping is None:
            return
        job_only = [k for k in mapping if k not in DEFAULT_KEYWORDS and k in JOB_KEYWORDS]
        if job_only:
            # a job named `default`: say so once instead of "did you mean ..." for each job keyword
            self.problems.error(
                at,
                '"default" is a reserved name: `default:` sets keywords every job inherits, so it cannot '
                f"be a job ({', '.join(map(str, job_only))} "
                f"{'are job keywords' if len(job_only) > 1 else 'is a job keyword'}); rename the job",
                raw=True,
            )
        check_keys(mapping, DEFAULT_KEYWORDS | set(job_only), at, self.problems, "default")

    def _workflow(self, root: LocMap) -> None:
        if "workflow" not in root or root["workflow"] is None:
            return
        at = self.file_at.of(root, "workflow")
        mapping = read_map(root["workflow"], at, self.problems)
        if mapping is None:
            return
        check_keys(mapping, WORKFLOW_KEYWORDS, at, self.problems, "workflow")
        if mapping.get("auto_cancel") is not None:
            read_map(mapping["auto_cancel"], at.of(mapping, "auto_cancel"), self.problems)
        if mapping.get("rules") is not None:
            rules = mapping["rules"]
            errors = self._check_rules(rules, "workflow.rules", at.of(mapping, "rules"))
            if not errors:
                lookup = resolve([*self.ctx.predefined, *self.global_vars, *self.ctx.variables])
                outcome = self._evaluate(rules, lookup, "always", "workflow.rules", at.of(mapping, "rules"))
                if outcome is not None:
                    if outcome.rule_index is not None:
                        self.workflow_rule = f"rules[{outcome.rule_index}] {outcome.rule_text}"
                    if outcome.when == "never":
                        self.filtered_out = True
                    elif outcome.when != "always":
                        self.problems.error(
                            at.of(mapping, "rules"), f"when must be always or never, got {outcome.when}"
                        )
                    if outcome.variables is not None:
                        self.workflow_vars = read_variables(
                            outcome.variables,
                            at.child("rules:variables", _mark(outcome.variables)),
                            self.problems,
                            top_level=False,
                        )
        if mapping.get("name") is not None:
            name = read_str(mapping["name"], at.of(mapping, "name"), self.problems, numbers=True)
            if name is not None:
                lookup = resolve(
                    [*self.ctx.predefined, *self.global_vars, *self.workflow_vars, *self.ctx.variables]
                )
                self.workflow_name = expand(name, lookup)
                if len(self.workflow_name) > 255:
                    self.problems.error(
                        at.of(mapping, "name"), "must be at most 255 characters after expansion"
                    )

    def _check_rules(self, rules: Any, where: str, at: At) -> bool:
        """Add check_rules' diagnostics (located at `at` when they lack a place); True on an error."""
        found = _located(check_rules(rules, where), at)
        self.problems.items.extend(found)
        return any(d.severity == "error" for d in found)

    def _evaluate(self, rules: Any, lookup: Mapping[str, str], default_when: str, where: str, at: At) -> Any:
        ctx = RuleContext(
            variables=lookup,
            project_dir=self.ctx.project_dir,
            changed_files=self.ctx.changed_files,
            changes_since=self.ctx.changes_since,
        )
        try:
            return evaluate_rules(rules, ctx, default_when=default_when, where=where)
        except PipelineError as exc:
            self.problems.items.extend(_located(exc.diagnostics, at))
            return None

    # -- one job: keywords -----------------------------------------------------------

    def _draft(self, name: str, value: Any, root: LocMap) -> None:
        at = At(root.mark_of(name), "", f'job "{name}"', f"jobs.{name}")
        if not isinstance(value, dict):
            hint = did_you_mean(name, TOP_LEVEL_KEYWORDS)
            if hint:
                text = f'"{name}" is not a top-level keyword{hint}; jobs must be mappings, got {kind(value)}'
            else:
                text = f"jobs must be mappings of keywords (script, stage...), got {kind(value)}"
            self.problems.error(at, text)
            return
        body = value if isinstance(value, LocMap) else LocMap(value, mark=at.mark)
        if len(name) > MAX_JOB_NAME:
            self.problems.error(
                at, f"the job name is {len(name)} characters long; GitLab allows {MAX_JOB_NAME}"
            )
        if not name.strip():
            self.problems.error(at, "a job name must not be empty")
        d = Draft(name=name, at=at, body=body)
        self.defined[name] = d
        self.drafts.append(d)
        p = self.problems
        for key in body:
            if key not in JOB_KEYWORDS:
                kat = at.of(body, key)
                hint = did_you_mean(str(key), JOB_KEYWORDS)
                if not hint and str(key) in TOP_LEVEL_KEYWORDS:
                    hint = f" ({key} is a top-level keyword, not a job keyword)"
                p.error(kat, f'unknown keyword "{key}"{hint}', raw=True)
            elif key in IGNORED_JOB_KEYWORDS and body[key] is not None:
                self.warn_jobs.setdefault(key, []).append(name)
        d.trigger = body.get("trigger") is not None
        self._scripts(d)
        self._stage(d)
        if body.get("variables") is not None:
            d.variables = read_variables(body["variables"], at.of(body, "variables"), p, top_level=False)
        self._inherit(d)
        self._when(d)
        self._flags(d)
        self._needs_and_deps(d)
        self._resources(d)
        self._conditions(d)

    def _scripts(self, d: Draft) -> None:
        body, at, p = d.body, d.at, self.problems
        if "script" in body and body["script"] is not None:
            d.script = read_script(body["script"], at.of(body, "script"), p, required=True) or ()
        elif not d.trigger:
            where = at.of(body, "script") if "script" in body else at
            hint = did_you_mean(d.name, TOP_LEVEL_KEYWORDS)
            extra = f' ("{d.name}" looks like a misspelt top-level keyword{hint})' if hint else ""
            p.error(where, f"has no script: add `script:` with the command(s) to run{extra}", raw=True)
        for key in ("before_script", "after_script"):
            if body.get(key) is not None:
                found = read_script(body[key], at.of(body, key), p, required=False) or ()
                setattr(d, key, found)

    def _stage(self, d: Draft) -> None:
        body, at = d.body, d.at
        key = "stage" if "stage" in body else ("type" if "type" in body else None)
        if key is None or body[key] is None:
            return
        where = at.of(body, key)
        if key == "type":
            self.problems.warning(where, "type is deprecated: use stage", raw=True)
        stage = read_str(body[key], where, self.problems, empty=False)
        if stage is None:
            return
        d.stage, d.stage_at = stage, where

    def _inherit(self, d: Draft) -> None:
        body, p = d.body, self.problems
        if body.get("inherit") is None:
            return
        at = d.at.of(body, "inherit")
        mapping = read_map(body["inherit"], at, p)
        if mapping is None:
            return
        check_keys(mapping, ("default", "variables"), at, p, "inherit")
        if "default" in mapping and mapping["default"] is not None:
            where = at.of(mapping, "default")
            value = mapping["default"]
            if isinstance(value, list):
                names = read_str_list(value, where, p, single=False) or ()
                allowed = DEFAULT_KEYWORDS | set(_DEPRECATED_GLOBALS)
                for i, n in enumerate(names):
                    if n not in allowed:
                        p.error(
                            where.of(value, i), f'"{n}" is not a default keyword{did_you_mean(n, allowed)}'
                        )
            else:
                read_bool(value, where, p)
        if "variables" in mapping and mapping["variables"] is not None:
            where = at.of(mapping, "variables")
            value = mapping["variables"]
            if isinstance(value, list):
                kept = read_str_list(value, where, p, single=False)
                if kept is not None:
                    d.inherit_variables = kept
            else:
                flag = read_bool(value, where, p)
                if flag is not None:
                    d.inherit_variables = flag

    def _when(self, d: Draft) -> None:
        body, at, p = d.body, d.at, self.problems
        if body.get("when") is not None:
            where = at.of(body, "when")
            if body["when"] == "never":
                text = "when: never can only be used in rules or workflow:rules (rules: [{when: never}])"
                p.error(where, text, raw=True)
                when = None
            else:
                when = read_enum(body["when"], [w for w in JOB_WHEN if w != "never"], where, p)
            if when is not None:
                d.when, d.when_at = when, where
        if body.get("start_in") is not None:
            where = at.of(body, "start_in")
            d.start_in = read_duration(body["start_in"], where, p)
            d.start_in_at = where
            if d.start_in is not None and d.start_in > MAX_START_IN_S:
                p.error(where, "must be at most one week")
        if body.get("allow_failure") is not None:
            found = read_allow_failure(body["allow_failure"], at.of(body, "allow_failure"), p)
            if found is not None:
                d.allow_failure, d.exit_codes = found

    def _flags(self, d: Draft) -> None:
        body, at, p = d.body, d.at, self.problems
        if body.get("interruptible") is not None:
            d.interruptible = bool(read_bool(body["interruptible"], at.of(body, "interruptible"), p))
        if body.get("retry") is not None:
            d.retry = read_retry(body["retry"], at.of(body, "retry"), p)
        if body.get("timeout") is not None:
            where = at.of(body, "timeout")
            d.timeout = read_duration(body["timeout"], where, p)
            if d.timeout is not None and d.timeout <= 0:
                p.error(where, "must be longer than zero")
        if body.get("parallel") is not None:
            d.parallel = parallel.read_parallel(body["parallel"], at.of(body, "parallel"), p)
        if body.get("resource_group") is not None:
            d.resource_group = read_str(body["resource_group"], at.of(body, "resource_group"), p, empty=False)
        if body.get("coverage") is not None:
            d.coverage = read_regex(body["coverage"], at.of(body, "coverage"), p)
        if body.get("image") is not None:
            d.image = read_image(body["image"], at.of(body, "image"), p)
        if body.get("services") is not None:
            d.services = read_services(body["services"], at.of(body, "services"), p)
        if body.get("tags") is not None:
            d.tags = read_str_list(body["tags"], at.of(body, "tags"), p, single=False, numbers=True) or ()
        if d.trigger:
            d.child, d.trigger_kind = read_trigger(body["trigger"], at.of(body, "trigger"), p)

    def _needs_and_deps(self, d: Draft) -> None:
        body, at, p = d.body, d.at, self.problems
        if "needs" in body and body["needs"] is not None:
            d.needs = read_needs(body["needs"], at.of(body, "needs"), p)
        if "dependencies" in body and body["dependencies"] is not None:
            where = at.of(body, "dependencies")
            value = body["dependencies"]
            if not isinstance(value, list):
                p.error(where, f"must be a list of job names, got {kind(value)}")
                return
            deps: list[tuple[str, At]] = []
            for item, item_at in flat_items(value, where):
                if isinstance(item, str) and item:
                    deps.append((item, item_at))
                else:
                    p.error(item_at, f"must be a job name, got {kind(item)}")
            d.dependencies = deps

    def _resources(self, d: Draft) -> None:
        body, at, p = d.body, d.at, self.problems
        if body.get("artifacts") is not None:
            d.artifacts = read_artifacts(body["artifacts"], at.of(body, "artifacts"), p)
        if body.get("cache") is not None:
            d.caches = read_cache(body["cache"], at.of(body, "cache"), p)
        if body.get("environment") is not None:
            found = read_environment(body["environment"], at.of(body, "environment"), p)
            if found is not None:
                d.environment, d.on_stop_at = found

    def _conditions(self, d: Draft) -> None:
        body, at, p = d.body, d.at, self.problems
        if "rules" in body:
            d.has_rules = True
            d.rules = body["rules"]
            if d.rules is None:
                d.rules = []
            d.rules_ok = not self._check_rules(d.rules, f"jobs.{d.name}.rules", at.of(body, "rules"))
            for key in ("only", "except"):
                if body.get(key) is not None:
                    p.error(
                        at.of(body, key),
                        "cannot be used with rules: use rules alone (only/except are deprecated)",
                    )
        else:
            for key in ("only", "except"):
                if body.get(key) is not None:
                    check_only_except(body[key], at.of(body, key), p)
        if d.when == "delayed" and d.start_in_at is None and not d.has_rules:
            p.error(
                d.when_at or at, "when: delayed needs start_in (for example start_in: 30 minutes)", raw=True
            )
        if d.start_in_at is not None and d.when != "delayed" and not d.has_rules:
            p.error(d.start_in_at, "can only be used with when: delayed")

    # -- instances, rules ---------------------------------------------------------------

    def _instances(self) -> list[Built]:
        out: list[Built] = []
        for d in self.drafts:
            if d.stage not in self.stages:
                where = d.stage_at or d.at
                hint = did_you_mean(d.stage, self.stages)
                self.problems.error(
                    where,
                    f'stage "{d.stage}" is not one of the stages: {", ".join(self.stages)}{hint}; '
                    "add it to `stages:` or fix the name",
                    raw=True,
                )
                continue
            if d.trigger and not self._runs_child(d):
                self.warn_jobs.setdefault(f"trigger:{d.trigger_kind}", []).append(d.name)
                for inst in parallel.instances(d.name, d.parallel):
                    built = self._instance(d, inst)  # its rules decide whether it is listed
                    if built is None:
                        continue
                    self.excluded.append((inst.name, _TRIGGER_LEFT_OUT[d.trigger_kind]))
                    needs = None if built.needs is None else tuple(n.job for n in built.needs)
                    self.triggers.append((built.job, needs, _trigger_text(d.body.get("trigger"))))
                continue
            for inst in parallel.instances(d.name, d.parallel):
                if len(inst.name) > MAX_JOB_NAME and len(d.name) <= MAX_JOB_NAME:
                    self.problems.error(
                        d.at.of(d.body, "parallel"),
                        f'makes the job name "{inst.name[:60]}...", {len(inst.name)} characters long; '
                        f"GitLab allows {MAX_JOB_NAME}: use shorter matrix values",
                    )
                    break
                built = self._instance(d, inst)
                if built is not None:
                    out.append(built)
        return out

    def _inherited_globals(self, d: Draft) -> list[Variable]:
        if d.inherit_variables is True:
            return list(self.global_vars)
        if d.inherit_variables is False:
            return []
        keep = set(d.inherit_variables)
        return [v for v in self.global_vars if v.key in keep]

    def _instance(self, d: Draft, inst: parallel.Instance) -> Built | None:
        p = self.problems
        matrix_vars = [Variable(key=k, value=v) for k, v in inst.matrix]
        yaml_vars = [*self._inherited_globals(d), *self.workflow_vars, *d.variables, *matrix_vars]
        job_pre = [
            Variable("CI_JOB_NAME", inst.name, expand=False),
            Variable("CI_JOB_STAGE", d.stage, expand=False),
        ]
        if inst.node_index is not None:
            job_pre += [
                Variable("CI_NODE_INDEX", str(inst.node_index), expand=False),
                Variable("CI_NODE_TOTAL", str(inst.node_total), expand=False),
            ]
        when, allow_failure, start_in = d.when, d.allow_failure, d.start_in
        interruptible = d.interruptible
        needs = d.needs
        needs_at = d.at.of(d.body, "needs")
        rule_vars: list[Variable] = []
        lookup: Mapping[str, str] | None = None
        if d.has_rules:
            lookup = resolve([*self.ctx.predefined, *job_pre, *yaml_vars, *self.ctx.variables])
            if not d.rules_ok:
                return None
            rules_at = d.at.of(d.body, "rules")
            outcome = self._evaluate(d.rules, lookup, d.when, f"jobs.{d.name}.rules", rules_at)
            if outcome is None:
                return None
            if outcome.when == "never":
                reason = (
                    "no rule matched"
                    if outcome.rule_index is None
                    else f"rules[{outcome.rule_index}] is when: never"
                )
                self.excluded.append((inst.name, reason))
                return None
            when = outcome.when
            self.included[inst.name] = f"rules[{outcome.rule_index}] {outcome.rule_text}"
            if outcome.allow_failure is not None:
                allow_failure = outcome.allow_failure
            elif d.allow_failure is not None:
                allow_failure = d.allow_failure
            else:
                # GitLab (issue 362225): a manual job whose `when: manual` is the job's own (the rule
                # keeps it, or says it again) may fail; only a rule's own `when: manual` blocks
                allow_failure = when == "manual" and d.when == "manual"
            if outcome.interruptible is not None:
                interruptible = outcome.interruptible
            if outcome.start_in is not None:
                start_in = read_duration(outcome.start_in, rules_at.child("start_in"), p)
            if when == "delayed" and start_in is None:
                p.error(rules_at, "when: delayed needs start_in (in the rule or the job)", raw=True)
            if outcome.variables is not None:
                rule_vars = read_variables(
                    outcome.variables,
                    rules_at.child("variables", _mark(outcome.variables)),
                    p,
                    top_level=False,
                )
            if outcome.needs is not None:
                needs_at = rules_at.child("needs", _mark(outcome.needs))
                needs = read_needs(outcome.needs, needs_at, p)
        else:
            lookup = resolve([*self.ctx.predefined, *job_pre, *yaml_vars, *self.ctx.variables])
            body = d.body
            verdict = only_except_verdict(
                body.get("only"),
                body.get("except"),
                lookup,
                self.ctx.changed_files,
                d.at.of(body, "only"),
                d.at.of(body, "except"),
                p,
            )
            if verdict is not None:
                self.excluded.append((inst.name, verdict))
                return None
            self.included[inst.name] = _only_text(body.get("only"), body.get("except"))
            if allow_failure is None:
                allow_failure = when == "manual"
        variables = (*yaml_vars, *rule_vars)
        caches = self._caches(d, [*self.ctx.predefined, *job_pre, *variables, *self.ctx.variables])
        retry = d.retry or RetrySpec()
        job = Job(
            name=inst.name,
            base_name=d.name,
            stage=d.stage,
            before_script=d.before_script,
            script=d.script,
            after_script=d.after_script,
            variables=tuple(variables),
            when=when,  # type: ignore[arg-type]
            start_in_s=start_in if when == "delayed" else None,
            allow_failure=bool(allow_failure),
            allow_failure_exit_codes=d.exit_codes,
            needs=None,
            dependencies=None,
            retry=Retry(max=retry.max, when=retry.when, exit_codes=retry.exit_codes),
            timeout_s=d.timeout,
            node_index=inst.node_index,
            node_total=inst.node_total,
            matrix=inst.matrix,
            artifacts=d.artifacts,
            cache=tuple(caches),
            environment=d.environment,
            resource_group=d.resource_group,
            interruptible=interruptible,
            coverage=d.coverage,
            image=d.image,
            services=d.services,
            tags=d.tags,
            location=Location(d.at.mark.file, d.at.mark.line, d.at.mark.column),
            trigger=d.child if self._runs_child(d) else None,
        )
        return Built(d, inst, job, needs, needs_at)

    def _runs_child(self, d: Draft) -> bool:
        """Whether this trigger job is built as a job that runs its (local) child pipeline."""
        return self.ctx.child_pipelines and d.child is not None

    def _caches(self, d: Draft, variables: list[Variable]) -> list[Cache]:
        out: list[Cache] = []
        lookup: Mapping[str, str] | None = None
        for spec in d.caches:
            policy = spec.policy
            if "$" in policy:
                lookup = lookup if lookup is not None else resolve(variables)
                value = expand(policy, lookup)
                if value not in CACHE_POLICIES:
                    self.problems.error(
                        spec.at,
                        f'"{policy}" expands to "{value}", which is not one of {", ".join(CACHE_POLICIES)}',
                    )
                    continue
                policy = value
            out.append(dataclasses.replace(spec.cache, policy=policy))  # type: ignore[arg-type]
        return out

    # -- needs, dependencies, cycles ---------------------------------------------------------

    def _resolve_needs(self, built: list[Built]) -> list[Job]:
        by_base: dict[str, list[parallel.Instance]] = {}
        by_name: dict[str, Built] = {}
        for b in built:
            by_base.setdefault(b.draft.name, []).append(b.instance)
            by_name[b.instance.name] = b
        stage_index = {s: i for i, s in enumerate(self.stages)}
        jobs: list[Job] = []
        for b in built:
            needs = None if b.needs is None else self._needs_of(b, by_base, by_name, stage_index)
            deps = self._dependencies_of(b, by_base, stage_index, needs)
            self._check_on_stop(b)
            jobs.append(dataclasses.replace(b.job, needs=needs, dependencies=deps))
        return jobs

    def _draft_names(self) -> list[str]:
        """The names of the YAML jobs, for hints (listed once, not once per misspelt name)."""
        if self._names is None or len(self._names) != len(self.drafts):
            self._names = [d.name for d in self.drafts]
        return self._names

    def _defined_stage(self, name: str) -> tuple[Draft | None, str]:
        """The YAML job a need names (a base name, or a parallel instance's full name)."""
        d = self.defined.get(name)
        if d is not None:
            return d, name
        for draft in self.drafts:
            if draft.parallel is not None and name.startswith(draft.name):
                for inst in parallel.instances(draft.name, draft.parallel):
                    if inst.name == name:
                        return draft, draft.name
        return None, name

    def _needs_of(
        self,
        b: Built,
        by_base: dict[str, list[parallel.Instance]],
        by_name: dict[str, Built],
        stage_index: dict[str, int],
    ) -> tuple[Need, ...]:
        p = self.problems
        out: list[Need] = []
        seen: set[str] = set()
        own_matrix = dict(b.instance.matrix)
        my_stage = stage_index.get(b.job.stage, 0)
        for spec in b.needs or []:
            if spec.external is not None:
                p.warning(
                    spec.at,
                    f'needs "{spec.job}" from another {spec.external}: not available locally, ignored',
                )
                continue
            target, base = self._defined_stage(spec.job)
            if target is None:
                hint = self.hint(spec.job, self._draft_names())
                if spec.optional:
                    p.warning(spec.at, f'needs "{spec.job}" (optional), which is not a job: ignored{hint}')
                else:
                    p.error(spec.at, f'needs "{spec.job}", which is not a job{hint}', raw=True)
                continue
            if target is b.draft and (spec.job == b.draft.name or spec.job == b.instance.name):
                p.error(spec.at, f'needs itself ("{spec.job}"): a job cannot need itself', raw=True)
                continue
            if target.stage in stage_index and stage_index[target.stage] > my_stage:
                p.error(
                    spec.at,
                    f'needs "{spec.job}", which is in a later stage ("{target.stage}") than this job '
                    f'("{b.job.stage}"); a job can only need jobs of its own or earlier stages',
                    raw=True,
                )
                continue
            if target.trigger and not self._runs_child(target):
                p.warning(spec.at, f'needs "{spec.job}", a trigger job that aicd leaves out: need ignored')
                continue
            candidates = by_base.get(base, [])
            if spec.job != base:  # a full instance name
                candidates = [i for i in candidates if i.name == spec.job]
            if spec.matrix is not None:
                selected = self._select_matrix(b, spec, target, candidates, own_matrix)
                if selected is None:
                    continue
                candidates = selected
            if not candidates:
                if spec.optional:
                    continue
                why = "rules leave it out of this pipeline"
                if spec.matrix is not None:
                    why = "no instance matches needs:parallel:matrix"
                p.error(
                    spec.at,
                    f'needs "{spec.job}", but {why}: mark the need `optional: true` or change its rules',
                    raw=True,
                )
                continue
            for inst in candidates:
                if inst.name in seen:
                    continue
                seen.add(inst.name)
                out.append(Need(job=inst.name, artifacts=spec.artifacts, optional=spec.optional))
        if len(out) > MAX_NEEDS:
            p.error(b.needs_at, f"lists {len(out)} jobs; GitLab allows at most {MAX_NEEDS} needs", raw=False)
        return tuple(out)

    def _select_matrix(
        self,
        b: Built,
        spec: NeedSpec,
        target: Draft,
        candidates: list[parallel.Instance],
        own: dict[str, str],
    ) -> list[parallel.Instance] | None:
        p = self.problems
        if target.parallel is None or not target.parallel.matrix:
            p.error(
                spec.at,
                f'needs "{spec.job}" with parallel:matrix, but "{spec.job}" has no parallel:matrix',
                raw=True,
            )
            return None
        selector: list[parallel.Combination] = []
        for combo in spec.matrix or []:
            resolved: list[tuple[str, str]] = []
            for key, value in combo:
                text, missing = parallel.substitute(value, own)
                if missing:
                    if not b.instance.matrix:
                        why = "this job has no parallel:matrix"
                    else:
                        why = f"this job's matrix has {', '.join(k for k, _ in b.instance.matrix)}"
                    text = (
                        f'needs "{spec.job}": $[[ matrix.{missing[0]} ]] is not a matrix variable of this job'
                    )
                    p.error(spec.at, f"{text} ({why})", raw=True)
                    return None
                resolved.append((key, text))
            selector.append(tuple(resolved))
        target_keys = {k for combo in target.parallel.matrix for k, _ in combo}
        for combo in selector:
            for key, _ in combo:
                if key not in target_keys:
                    hint = did_you_mean(key, target_keys)
                    text = f'needs "{spec.job}": "{key}" is not one of its parallel:matrix variables{hint}'
                    p.error(spec.at, text, raw=True)
                    return None
        return parallel.select(candidates, selector)

    def _dependencies_of(
        self,
        b: Built,
        by_base: dict[str, list[parallel.Instance]],
        stage_index: dict[str, int],
        needs: tuple[Need, ...] | None,
    ) -> tuple[str, ...] | None:
        deps = b.draft.dependencies
        if deps is None:
            return None
        p = self.problems
        out: list[str] = []
        # GitLab checks dependencies against needs only when needs lists jobs (`needs: []` does not)
        need_names = {n.job for n in needs} if needs else None
        need_bases = {n.job for n in b.needs} if b.needs else None
        my_stage = stage_index.get(b.job.stage, 0)
        for name, at in deps:
            target, base = self._defined_stage(name)
            if target is None:
                hint = self.hint(name, self._draft_names())
                p.error(at, f'dependencies: "{name}" is not a job{hint}', raw=True)
                continue
            if need_bases is not None:
                if name not in need_bases and base not in need_bases:
                    p.error(
                        at,
                        f'dependencies: "{name}" must also be in needs (a job with needs can only take '
                        "artifacts from the jobs it needs)",
                        raw=True,
                    )
                    continue
            elif stage_index.get(target.stage, 0) > my_stage:
                p.error(
                    at,
                    f'dependencies: "{name}" is in stage "{target.stage}", a later stage than '
                    f'"{b.job.stage}" (a job can take artifacts from its own or earlier stages)',
                    raw=True,
                )
                continue
            elif stage_index.get(target.stage, 0) == my_stage:
                # GitLab allows it; without needs both jobs run at once and the artifacts are not passed
                p.warning(
                    at,
                    f'dependencies: "{name}" is in the same stage ("{b.job.stage}"): its artifacts reach '
                    f"this job only if it also has needs: [{name}]",
                    raw=True,
                )
            names = [i.name for i in by_base.get(base, []) if name == base or i.name == name]
            if need_names is not None:
                names = [n for n in names if n in need_names]
            for n in names:
                if n not in out:
                    out.append(n)
        return tuple(out)

    def _check_on_stop(self, b: Built) -> None:
        env = b.draft.environment
        if env is None or env.on_stop is None or b.draft.on_stop_at is None:
            return
        if env.on_stop not in self.defined:
            hint = self.hint(env.on_stop, list(self.defined))
            self.problems.error(b.draft.on_stop_at, f'names "{env.on_stop}", which is not a job{hint}')

    def _check_cycles(self, jobs: list[Job]) -> None:
        graph = {j.name: [n.job for n in j.needs or ()] for j in jobs}
        where = {j.name: j for j in jobs}
        state: dict[str, int] = {}  # 1: on the stack, 2: done
        reported: set[frozenset[str]] = set()
        for start in graph:
            if state.get(start):
                continue
            stack: list[tuple[str, int]] = [(start, 0)]
            path: list[str] = [start]
            state[start] = 1
            while stack:
                node, i = stack[-1]
                nexts = graph.get(node, [])
                if i < len(nexts):
                    stack[-1] = (node, i + 1)
                    nxt = nexts[i]
                    if nxt not in graph:
                        continue
                    if state.get(nxt) == 1:
                        cycle = [*path[path.index(nxt) :], nxt]
                        key = frozenset(cycle)
                        if key not in reported:
                            reported.add(key)
                            job = where[nxt]
                            at = At(
                                Mark(job.location.file, job.location.line, job.location.column),
                                "needs",
                                f'job "{job.base_name}"',
                                f"jobs.{job.base_name}",
                            )
                            self.problems.error(
                                at, f"form a cycle: {' -> '.join(cycle)}; remove one of these needs"
                            )
                    elif not state.get(nxt):
                        state[nxt] = 1
                        stack.append((nxt, 0))
                        path.append(nxt)
                else:
                    state[node] = 2
                    stack.pop()
                    path.pop()

    def _summary_warnings(self, jobs: list[Job]) -> None:
        images = _unique(j.base_name for j in jobs if j.image or j.services)
        if images:
            used = [
                k
                for k, present in (
                    ("image", any(j.image for j in jobs)),
                    ("services", any(j.services for j in jobs)),
                )
                if present
            ]
            what = " and ".join(used)
            verb = "are" if len(used) > 1 else "is"
            self.problems.warning(
                self.summary_at,
                f"{what} {verb} ignored: aicd runs jobs in the local shell (jobs: {_names(images)})",
                raw=True,
            )
        for key in (*IGNORED_JOB_KEYWORDS, *_TRIGGER_WARNINGS):
            names = _unique(self.warn_jobs.get(key, []))
            if not names:
                continue
            if key in _TRIGGER_WARNINGS:
                text = _TRIGGER_WARNINGS[key].format(jobs=_names(names))
            else:
                text = f"{key} is not supported locally and is ignored (jobs: {_names(names)})"
            self.problems.warning(self.summary_at, text, raw=True)
        if not jobs and self.drafts and not self.problems.errors and not self.filtered_out:
            self.problems.warning(
                self.summary_at,
                "no job is in this pipeline: rules or only/except left every job out",
                raw=True,
            )


_TRIGGER_LEFT_OUT = {
    "local": "child pipelines are run by `aicd run` only",
    "project": "multi-project pipelines are out of scope",
    "dynamic": "dynamic child pipelines from several files are not supported",
    "include": "this trigger:include is not supported",
}
_TRIGGER_WARNINGS = {
    "trigger:local": (
        "child pipelines are run by `aicd run` only: here the trigger jobs are left out (jobs: {jobs})"
    ),
    "trigger:project": (
        "multi-project pipelines (trigger: project) are out of scope: the trigger jobs are left out "
        "(jobs: {jobs})"
    ),
    "trigger:dynamic": (
        "dynamic child pipelines from several files are not supported: the trigger jobs are left out "
        "(jobs: {jobs})"
    ),
    "trigger:include": (
        "child pipelines from other projects, templates or several files are not supported: the trigger "
        "jobs are left out (jobs: {jobs})"
    ),
}


def read_trigger(value: Any, at: At, problems: Problems) -> tuple[Trigger | None, str]:
    """`trigger:` -> (the local child pipeline, "local") or (None, why aicd leaves the job out)."""
    if isinstance(value, str):
        return None, "project"
    mapping = read_map(value, at, problems) if isinstance(value, dict) else None
    if mapping is None:
        if not isinstance(value, dict):
            problems.error(at, f"must be a project path or a mapping, got {kind(value)}")
        return None, "project"
    check_keys(mapping, TRIGGER_KEYS, at, problems, "trigger")
    strategy = None
    if mapping.get("strategy") is not None:
        strategy = read_enum(mapping["strategy"], ("depend",), at.of(mapping, "strategy"), problems)
    yaml_vars, pipeline_vars = True, False
    if mapping.get("forward") is not None:
        where = at.of(mapping, "forward")
        forward = read_map(mapping["forward"], where, problems)
        if forward is not None:
            check_keys(forward, ("yaml_variables", "pipeline_variables"), where, problems, "forward")
            if forward.get("yaml_variables") is not None:
                yaml_vars = bool(
                    read_bool(forward["yaml_variables"], where.of(forward, "yaml_variables"), problems)
                )
            if forward.get("pipeline_variables") is not None:
                found = read_bool(
                    forward["pipeline_variables"], where.of(forward, "pipeline_variables"), problems
                )
                pipeline_vars = bool(found)
    if mapping.get("project") is not None:
        return None, "project"
    if mapping.get("include") is None:
        problems.error(at, "needs include (a child pipeline) or project (a multi-project pipeline)")
        return None, "project"
    include = mapping["include"]
    where = at.of(mapping, "include")
    items = [item for item, _ in flat_items(include, where)] if isinstance(include, list) else [include]
    if len(items) != 1:
        return None, "dynamic" if any(isinstance(i, dict) and "artifact" in i for i in items) else "include"
    item = items[0]
    if isinstance(item, dict) and "artifact" in item:
        artifact, job = item.get("artifact"), item.get("job")
        if not isinstance(artifact, str) or not artifact.strip() or not isinstance(job, str) or not job:
            problems.error(
                where, "include: artifact needs the artifact's path and the job that makes it (job:)"
            )
            return None, "dynamic"
        return Trigger(artifact.lstrip("/"), strategy, yaml_vars, pipeline_vars, artifact_job=job), "local"
    path = item if isinstance(item, str) else (item.get("local") if isinstance(item, dict) else None)
    if not isinstance(path, str) or not path.strip():
        return None, "include"
    if path.startswith(("http://", "https://")):
        return None, "include"
    return Trigger(path.lstrip("/"), strategy, yaml_vars, pipeline_vars), "local"


# -- needs parsing (jobs and rules:needs) ----------------------------------------------------


def read_needs(value: Any, at: At, problems: Problems) -> list[NeedSpec] | None:
    if not isinstance(value, list):
        problems.error(at, f"must be a list of job names, like needs: [build], got {kind(value)}")
        return None
    out: list[NeedSpec] = []
    for item, where in flat_items(value, at):
        if isinstance(item, str):
            if not item:
                problems.error(where, "must name a job, got an empty string")
                continue
            out.append(NeedSpec(job=item, at=where))
            continue
        if not isinstance(item, dict):
            problems.error(where, f"must be a job name or a mapping with job, got {kind(item)}")
            continue
        mapping = item if isinstance(item, LocMap) else LocMap(item, mark=where.mark)
        check_keys(
            mapping,
            ("job", "artifacts", "optional", "parallel", "pipeline", "project", "ref"),
            where,
            problems,
            "needs",
        )
        job = (
            read_str(mapping.get("job"), where.of(mapping, "job"), problems, empty=False)
            if "job" in mapping
            else None
        )
        if "job" not in mapping:
            problems.error(where, "needs a job: the name of the job needed")
        if job is None:
            continue
        spec = NeedSpec(job=job, at=where.of(mapping, "job"))
        if mapping.get("artifacts") is not None:
            spec.artifacts = bool(read_bool(mapping["artifacts"], where.of(mapping, "artifacts"), problems))
        if mapping.get("optional") is not None:
            spec.optional = bool(read_bool(mapping["optional"], where.of(mapping, "optional"), problems))
        if "project" in mapping:
            spec.external = "project"
        elif "pipeline" in mapping:
            spec.external = "pipeline"
        if mapping.get("parallel") is not None:
            par_at = where.of(mapping, "parallel")
            par = read_map(mapping["parallel"], par_at, problems)
            if par is not None:
                check_keys(par, ("matrix",), par_at, problems, "needs:parallel")
                if "matrix" not in par:
                    problems.error(par_at, "needs matrix: the parallel:matrix values to select")
                    continue
                combos = parallel.read_matrix(
                    par["matrix"], par_at.of(par, "matrix"), problems, expressions=True
                )
                if combos is None:
                    continue
                spec.matrix = combos
        out.append(spec)
    return out


def _located(items: Sequence[Diagnostic], at: At) -> list[Diagnostic]:
    """`items`, those without a line placed at `at` (the key they are about)."""
    mark = at.mark
    return [
        d
        if d.line or not mark.line
        else dataclasses.replace(d, file=mark.file, line=mark.line, column=mark.column)
        for d in items
    ]


def _mark(value: Any) -> Mark | None:
    if isinstance(value, (LocMap, LocList, Reference)) and value.mark.line:
        return value.mark
    return None


def _unique(names: Any) -> list[str]:
    out: list[str] = []
    for n in names:
        if n not in out:
            out.append(n)
    return out


def _names(names: list[str], limit: int = 10) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])} and {len(names) - limit} more"


def _trigger_text(value: Any) -> str:
    """What a trigger job starts: `child: include ci/child.yml`, `project: group/other`."""
    if isinstance(value, str):
        return f"project: {value}"
    if isinstance(value, dict):
        if value.get("include") is not None:
            include = value["include"]
            items = include if isinstance(include, list) else [include]
            names = [
                str(i.get("local") or i.get("artifact") or i.get("project") or i.get("template") or "?")
                if isinstance(i, dict)
                else str(i)
                for i in items
            ]
            return "child pipeline: " + ", ".join(names)
        if value.get("project") is not None:
            return f"project: {value['project']}"
    return "trigger"


def _only_text(only: Any, except_: Any, limit: int = 80) -> str:
    parts = [
        f"{key}: {json.dumps(value, default=str)}"
        for key, value in (("only", only), ("except", except_))
        if value is not None
    ]
    text = ", ".join(parts) or "(no rules)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _warning_text(d: Diagnostic) -> str:
    if d.line:
        return f"{d.file}:{d.line}:{d.column}: {d.message}"
    return d.message


# -- only / except (deprecated, still supported) -------------------------------------------

ONLY_KEYS = ("refs", "variables", "changes", "kubernetes")
# `only: [keyword]` -> the CI_PIPELINE_SOURCE it stands for
REF_SOURCES = {
    "api": "api",
    "chat": "chat",
    "chats": "chat",
    "external": "external",
    "external_pull_requests": "external_pull_request_event",
    "merge_requests": "merge_request_event",
    "pipelines": "pipeline",
    "pushes": "push",
    "schedules": "schedule",
    "triggers": "trigger",
    "web": "web",
}


def _only_parts(value: Any, at: At, problems: Problems | None) -> dict[str, Any] | None:
    """`only:`/`except:` as {refs, variables, changes, kubernetes}; a list or a string is refs."""
    if isinstance(value, str):
        return {"refs": [value]}
    if isinstance(value, list):
        return {"refs": value}
    if isinstance(value, dict):
        return dict(value)
    if problems is not None:
        problems.error(
            at, f"must be a list of refs or a mapping with refs/variables/changes, got {kind(value)}"
        )
    return None


def check_only_except(value: Any, at: At, problems: Problems) -> None:
    parts = _only_parts(value, at, problems)
    if parts is None:
        return
    if isinstance(value, LocMap):
        check_keys(value, ONLY_KEYS, at, problems, at.key)
    for key in ("refs", "variables", "changes"):
        raw = parts.get(key)
        if raw is None:
            continue
        where = at.of(value, key) if isinstance(value, LocMap) else at
        if key == "changes" and isinstance(raw, dict):
            raw = raw.get("paths")
        items = read_str_list(raw, where, problems, single=False)
        if items is None:
            continue
        for i, text in enumerate(items):
            item_at = where.of(raw, i)
            if key == "variables":
                from aicd.pipeline.expression import evaluate  # only for pipelines that use it

                try:
                    evaluate(text, {})
                except ExpressionError as exc:
                    problems.error(item_at, f'"{text}" is not a valid expression: {exc}')
            elif key == "refs":
                # GitLab splits `pattern@group/project` at the first `@` (the job runs only in that project)
                pattern = text.partition("@")[0]
                if not (pattern.startswith("/") and pattern.count("/") >= 2):
                    continue
                try:
                    _regex_from_value(pattern)
                except ExpressionError as exc:
                    problems.error(item_at, f"is not a valid regular expression: {exc}")
    if parts.get("kubernetes") is not None:
        where = at.of(value, "kubernetes") if isinstance(value, LocMap) else at
        problems.warning(where, "kubernetes is not known locally: this condition is taken as true")


def only_except_verdict(
    only: Any,
    except_: Any,
    lookup: Mapping[str, str],
    changed_files: Sequence[str] | ChangedFiles | None,
    only_at: At,
    except_at: At,
    problems: Problems,
) -> str | None:
    """None when the job is in the pipeline, else why it is not."""
    source = lookup.get("CI_PIPELINE_SOURCE", "")
    if only is None:
        if source == "merge_request_event" and except_ is None:
            return "jobs without rules or only do not run in merge request pipelines"
        only_parts: dict[str, Any] | None = None
    else:
        only_parts = _only_parts(only, only_at, None)
    if only_parts is not None and not all(
        _condition(key, raw, lookup, changed_files, source)
        for key, raw in only_parts.items()
        if raw is not None
    ):
        return "only: does not match"
    except_parts = None if except_ is None else _only_parts(except_, except_at, None)
    if except_parts is not None and any(
        _condition(key, raw, lookup, changed_files, source)
        for key, raw in except_parts.items()
        if raw is not None and key != "kubernetes"
    ):
        return "except: matches"
    return None


def _condition(
    key: str, raw: Any, lookup: Mapping[str, str], changed: Sequence[str] | ChangedFiles | None, source: str
) -> bool:
    if key == "kubernetes":
        return True
    if key == "changes" and isinstance(raw, dict):
        raw = raw.get("paths") or []
    items = [str(x) for x in raw] if isinstance(raw, list) else [str(raw)]
    if key == "refs":
        return any(_ref_matches(r, lookup, source) for r in items)
    if key == "variables":
        from aicd.pipeline.expression import evaluate  # only for pipelines that use it

        out = False
        for text in items:
            with contextlib.suppress(ExpressionError):  # reported by check_only_except
                out = out or evaluate(text, lookup)
        return out
    if key == "changes":
        files = changed_files_of(changed)
        if files is None:
            return True
        patterns = [expand(p, lookup) for p in items]
        return any(glob_match(p, f) for p in patterns if p for f in files)
    return False


def _regex_from_value(text: str) -> re.Pattern[str] | None:
    # the rules:if language is imported only by the pipelines that use it (`aicd run` start-up)
    from aicd.pipeline.expression import regex_from_value

    return regex_from_value(text)


def _ref_matches(pattern: str, lookup: Mapping[str, str], source: str) -> bool:
    ref, _, project = pattern.partition("@")
    if project and lookup.get("CI_PROJECT_PATH") not in (None, project):
        return False
    if ref == "branches":
        return bool(lookup.get("CI_COMMIT_BRANCH")) and source != "merge_request_event"
    if ref == "tags":
        return bool(lookup.get("CI_COMMIT_TAG"))
    if ref in REF_SOURCES:
        return source == REF_SOURCES[ref]
    name = lookup.get("CI_COMMIT_REF_NAME", "")
    if ref.startswith("/") and ref.count("/") >= 2:
        try:
            regex = _regex_from_value(ref)
        except ExpressionError:
            return False
        if regex is not None:
            return regex.search(name) is not None
    return ref == name
