"""`extends`, `!reference` and `default:` — the merged document made explicit.

In GitLab's order (after includes):

1. `extends` (a name or a list, from hidden or normal jobs): the parents,
   each extended first, are deep-merged in list order (later parents win),
   then the job's own keys on top; mappings merge, lists and scalars are
   replaced. The `extends` key is removed. More than 10 ancestors along one
   chain (GitLab's limit of 11 levels), unknown parents and loops are errors.
2. `!reference [job, key, ...]` is replaced by the value at that path (looked
   up after `extends`, so inherited keys can be referenced). References may
   nest up to 10 levels; a circular chain or a missing path is an error. A
   reference inside a list that resolves to a list stays a nested list
   (GitLab flattens scripts later).
3. `default:` (and the deprecated top-level image, services, cache,
   before_script, after_script; defining one in both places is GitLab's
   error) fills each job's unset keys, unless the job says
   `inherit: default: false` or lists the keywords it takes.

Hidden jobs (`.name`) stay in the output, extended and with references
resolved, but without defaults; trigger jobs get no defaults either.
Every problem is collected; one PipelineError carries them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aicd.errors import Diagnostic, PipelineError
from aicd.pipeline.include import Document, assemble, deep_merge
from aicd.pipeline.loader import MAX_NODES
from aicd.pipeline.nodes import LocList, LocMap, Mark, Reference
from aicd.pipeline.rules import RuleContext
from aicd.pipeline.schema import TOP_LEVEL_KEYWORDS
from aicd.suggest import HintBudget, did_you_mean

# Top-level keys that are not jobs: the keyword table of schema.py.
NON_JOB_KEYS = TOP_LEVEL_KEYWORDS
DEFAULT_KEYS = (
    "after_script",
    "artifacts",
    "before_script",
    "cache",
    "hooks",
    "id_tokens",
    "image",
    "interruptible",
    "retry",
    "services",
    "tags",
    "timeout",
)
GLOBAL_DEFAULT_KEYS = ("image", "services", "cache", "before_script", "after_script")
MAX_EXTENDS_ANCESTORS = 10  # GitLab: 11 levels of `extends`
MAX_REFERENCE_DEPTH = 10


def resolve(doc: Document) -> LocMap:
    """The top-level map of `doc` with extends, references and defaults applied."""
    try:
        return _Resolver(doc.root).run()
    except RecursionError:
        mark = doc.root.mark
        raise PipelineError(
            Diagnostic(
                "extends and !reference make the pipeline nested too deeply: flatten the structure",
                mark.file or (doc.files[0] if doc.files else ""),
                mark.line or 1,
                mark.column or 1,
            )
        ) from None


def load_document(
    project_dir: Path,
    file: str,
    rule_ctx: RuleContext,
    *,
    inputs: Mapping[str, Any] | None = None,
) -> tuple[LocMap, Document]:
    """assemble() then resolve(): the resolved top-level map and the Document it came from."""
    doc = assemble(project_dir, file, rule_ctx, inputs=inputs)
    return resolve(doc), doc


def is_job_name(name: str) -> bool:
    """Whether a top-level key names a job (hidden jobs included)."""
    return name not in NON_JOB_KEYS


class _Resolver:
    def __init__(self, root: LocMap) -> None:
        self.source = root
        self.hint = HintBudget()  # bounded did-you-mean work in a file with thousands of jobs
        self.errors: list[Diagnostic] = []
        self.extended: dict[str, LocMap] = {}
        self.root: LocMap = root
        self.ref_memo: dict[tuple[str, ...], tuple[Any, int, int]] = {}
        self.walked: dict[int, tuple[Any, int, int]] = {}

    def run(self) -> LocMap:
        root = self.source.copy_with()
        for name, value in self.source.items():
            if is_job_name(name) and isinstance(value, LocMap) and "extends" in value:
                root[name] = self._extend(name, ())
        self.root = root
        resolved = LocMap(mark=root.mark)
        resolved.key_marks = dict(root.key_marks)
        total = 0
        for name, value in root.items():
            new, _height, size = self._walk(value, ())
            resolved[name] = new
            total += size
        if total > MAX_NODES and not self.errors:
            self._error(
                f"!reference values make the pipeline larger than {MAX_NODES:,} values; "
                "reference smaller sections",
                root.mark,
            )
        self._apply_defaults(resolved)
        if self.errors:
            raise PipelineError(self.errors)
        return resolved

    def _error(self, message: str, mark: Mark) -> None:
        self.errors.append(Diagnostic(message, mark.file, mark.line, mark.column))

    # --- extends -------------------------------------------------------------------

    def _extend(self, name: str, chain: tuple[str, ...]) -> LocMap:
        done = self.extended.get(name)
        if done is not None:
            return done
        job: LocMap = self.source[name]
        own = job.copy_with()
        del own["extends"]
        own.key_marks.pop("extends", None)
        mark = job.mark_of("extends")
        chain = (*chain, name)
        if len(chain) > MAX_EXTENDS_ANCESTORS + 1:
            self._error(
                f"{chain[0]}: `extends` nested too deep ({' -> '.join(chain)}); GitLab allows 11 levels: "
                "make the chain shorter",
                mark,
            )
            self.extended[name] = own
            return own
        merged: LocMap | None = None
        for parent, parent_mark in self._parents(name, job["extends"], mark):
            base = self._parent(name, parent, parent_mark, chain)
            if base is not None:
                merged = base if merged is None else deep_merge(merged, base)
        result = own if merged is None else deep_merge(merged, own)
        self.extended[name] = result
        return result

    def _parents(self, name: str, spec: Any, mark: Mark) -> list[tuple[str, Mark]]:
        if isinstance(spec, str):
            return [(spec, mark)]
        if isinstance(spec, LocList) and all(isinstance(p, str) for p in spec):
            return [(p, spec.mark_of(i)) for i, p in enumerate(spec)]
        self._error(
            f"{name}: extends must be a job name or a list of job names, such as `extends: .base`",
            mark,
        )
        return []

    def _parent(self, name: str, parent: str, mark: Mark, chain: tuple[str, ...]) -> LocMap | None:
        value = self.source.get(parent)
        if parent not in self.source:
            candidates = [k for k, v in self.source.items() if isinstance(v, LocMap)]
            self._error(
                f"{name}: extends `{parent}`, which is not defined{self.hint(parent, candidates)}",
                mark,
            )
            return None
        if parent in chain:
            loop = " -> ".join([*chain[chain.index(parent) :], parent])
            self._error(f"extends loop: {loop}; remove one of these `extends`", mark)
            return None
        if not isinstance(value, LocMap):
            self._error(f"{name}: extends `{parent}`, which is not a job (a mapping of keywords)", mark)
            return None
        if "extends" in value:
            return self._extend(parent, chain)
        return value

    # --- !reference ----------------------------------------------------------------------

    def _walk(self, value: Any, chain: tuple[tuple[str, ...], ...]) -> tuple[Any, int, int]:
        """(value with references resolved, reference depth, size counting shared values per use)."""
        if isinstance(value, Reference):
            return self._reference(value, chain)
        if not isinstance(value, (LocMap, LocList)):
            return value, 0, 1
        key = id(value)
        memo = self.walked.get(key)
        if memo is not None and memo[0] is not None:
            return memo
        height = 0
        size = 1
        if isinstance(value, LocMap):
            out_map: LocMap | None = None
            for k, item in value.items():
                new, h, s = self._walk(item, chain)
                height = max(height, h)
                size += s
                if new is not item:
                    if out_map is None:
                        out_map = value.copy_with()
                    out_map[k] = new
            result: Any = value if out_map is None else out_map
        else:
            out_list: LocList | None = None
            for i, item in enumerate(value):
                new, h, s = self._walk(item, chain)
                height = max(height, h)
                size += s
                if new is not item:
                    if out_list is None:
                        out_list = LocList(value, mark=value.mark)
                        out_list.item_marks = list(value.item_marks)
                    out_list[i] = new
            result = value if out_list is None else out_list
        self.walked[key] = (result, height, size)
        return result, height, size

    def _reference(self, ref: Reference, chain: tuple[tuple[str, ...], ...]) -> tuple[Any, int, int]:
        path = ref.path
        memo = self.ref_memo.get(path)
        if memo is not None:
            return memo
        shown = _show(path)
        if path in chain:
            loop = " -> ".join(_show(p) for p in (*chain[chain.index(path) :], path))
            self._error(f"!reference {shown} is part of a circular chain: {loop}", ref.mark)
            return None, 0, 1
        target = self._dig(ref, chain)
        if target is None:
            self.ref_memo[path] = (None, 0, 1)
            return None, 0, 1
        resolved, height, size = self._walk(target, (*chain, path))
        height += 1
        if height > MAX_REFERENCE_DEPTH:
            self._error(
                f"!reference {shown} nests !reference tags {height} levels deep; GitLab allows "
                f"{MAX_REFERENCE_DEPTH}",
                ref.mark,
            )
            resolved = None
        elif size > MAX_NODES:
            self._error(
                f"!reference {shown} expands to more than {MAX_NODES:,} values (references of references "
                "multiply); reference smaller sections",
                ref.mark,
            )
            resolved = None
        result = (resolved, height, size)
        self.ref_memo[path] = result
        return result

    def _dig(self, ref: Reference, chain: tuple[tuple[str, ...], ...]) -> Any:
        value: Any = self.root
        for i, key in enumerate(ref.path):
            if isinstance(value, Reference):
                value = self._reference(value, chain)[0]
            if not isinstance(value, LocMap) or key not in value:
                shown = _show(ref.path)
                if i == 0:
                    hint = self.hint(key, self.root)
                    self._error(f"!reference {shown} could not be found: no job `{key}`{hint}", ref.mark)
                elif isinstance(value, LocMap):
                    where = ".".join(ref.path[:i])
                    self._error(
                        f"!reference {shown} could not be found: `{where}` has no key `{key}`"
                        f"{did_you_mean(key, value)}",
                        ref.mark,
                    )
                else:
                    where = ".".join(ref.path[:i])
                    self._error(
                        f"!reference {shown} could not be found: `{where}` is not a mapping", ref.mark
                    )
                return None
            value = value[key]
        if value is None:
            self._error(
                f"!reference {_show(ref.path)} could not be found: its value is empty (null)", ref.mark
            )
        return value

    # --- default: --------------------------------------------------------------------------

    def _apply_defaults(self, root: LocMap) -> None:
        entries = self._default_entries(root)
        for name, job in list(root.items()):
            if not is_job_name(name) or name.startswith(".") or not isinstance(job, LocMap):
                continue
            if "trigger" in job:
                continue  # trigger jobs do not run scripts: GitLab gives them no defaults
            allowed = self._inherit(job)
            if allowed is False:
                continue
            out: LocMap | None = None
            for key, (value, mark) in entries.items():
                if job.get(key) is not None:
                    continue
                if allowed is not True and key not in allowed:
                    continue
                if out is None:
                    out = job.copy_with()
                out[key] = value
                out.key_marks[key] = mark
            if out is not None:
                root[name] = out

    def _default_entries(self, root: LocMap) -> dict[str, tuple[Any, Mark]]:
        """What `default:` and the deprecated globals give each job (unknown keys are the builder's error)."""
        entries: dict[str, tuple[Any, Mark]] = {}
        default = root.get("default")
        if isinstance(default, LocMap):
            for key, value in default.items():
                if key in DEFAULT_KEYS and value is not None:
                    entries[key] = (value, default.mark_of(key))
        for key in GLOBAL_DEFAULT_KEYS:
            if key not in root or root[key] is None:
                continue
            if key in entries:
                self._error(
                    f"{key} is defined both at the top level and in `default:`; keep only the one in "
                    f"`default:` (top-level {key} is deprecated)",
                    root.mark_of(key),
                )
                continue
            entries[key] = (root[key], root.mark_of(key))
        return entries

    @staticmethod
    def _inherit(job: LocMap) -> bool | frozenset[str]:
        """Which default keywords the job takes (a malformed `inherit` is the builder's error)."""
        inherit = job.get("inherit")
        if not isinstance(inherit, LocMap):
            return True
        spec = inherit.get("default", True)
        if isinstance(spec, bool):
            return spec
        if isinstance(spec, list):
            return frozenset(k for k in spec if isinstance(k, str))
        return True


def _show(path: tuple[str, ...]) -> str:
    return "[" + ", ".join(path) + "]"
