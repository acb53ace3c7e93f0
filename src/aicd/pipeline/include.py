"""`include:` — one merged document from the pipeline file and the files it includes.

GitLab's documented semantics, as applied here:

- `include:` is a path string, a mapping, or a list of them. A string is
  `local:` unless it is a URL. `local:` paths are relative to the project
  root (a leading `/` is the root too), in nested includes as well. CI/CD
  variables of the run (`rule_ctx.variables`) are expanded in the path.
- Wildcards: `*` matches within one directory, `**` also across `/`
  (`configs/*.yml`, `configs/**.yml`, `configs/**/*.yml`); matches are
  included in path order; no match is an error.
- Every included file counts toward GitLab's limit of 150 (repeats too); a
  file that includes itself through its own includes is an include loop.
- `rules:` (`if`, `exists`, `changes`, `when: never|always`) decide whether an
  include is used.
- `inputs:` fill the included file's `spec:inputs` header (types string,
  number, boolean, array; `default`, `options`, `regex`), and
  `$[[ inputs.name ]]` blocks (with up to three functions: `expand_vars`,
  `truncate(offset,length)`, `posix_escape`) are replaced in keys and values
  before the file's own includes are read. A block that is the whole value
  keeps the input's type.
- Merge: included files first, in order, then the including file; mappings
  are deep-merged (later wins), any other value is replaced.
- `remote:`, `project:`, `template:`, `component:` need network access to
  other projects and are refused with a located error.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aicd.errors import Diagnostic, PipelineError
from aicd.pipeline.loader import LoadedFile, load_file_with_spec
from aicd.pipeline.nodes import LocList, LocMap, Mark, Reference, describe, mark_of
from aicd.pipeline.rules import RuleContext, evaluate_rules
from aicd.pipeline.variables import expand
from aicd.suggest import did_you_mean

MAX_INCLUDES = 150
MAX_INTERPOLATED_STRING = 1024 * 1024

INCLUDE_KINDS = ("local", "remote", "project", "template", "component", "artifact")
INCLUDE_KEYS = frozenset((*INCLUDE_KINDS, "file", "ref", "job", "rules", "inputs", "cache", "integrity"))
INCLUDE_RULE_KEYS = ("if", "exists", "changes", "when")
INCLUDE_RULE_WHEN = ("never", "always")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass
class Document:
    """The merged pipeline: the root mapping, every file read (main first), warnings."""

    root: LocMap
    files: tuple[str, ...]
    warnings: list[Diagnostic] = field(default_factory=list)


def assemble(
    project_dir: Path,
    file: str,
    rule_ctx: RuleContext,
    *,
    inputs: Mapping[str, Any] | None = None,
) -> Document:
    """Read `file` (relative to `project_dir`) and everything it includes into one Document.

    `inputs` are the pipeline's own inputs, for a `spec:inputs` header in
    `file` itself. Raises PipelineError with every problem found.
    """
    try:
        return _Assembler(project_dir, rule_ctx).run(file, inputs)
    except RecursionError:
        raise PipelineError(
            Diagnostic("the merged pipeline is nested too deeply to read: flatten the structure", file, 1, 1)
        ) from None


def deep_merge(base: LocMap, over: LocMap) -> LocMap:
    """A new map: `base` with `over` on top; mappings in both are merged, anything else replaced.

    Neither argument is changed. Keys keep `base`'s order, new keys follow;
    each key keeps the mark of the side its value comes from.
    """
    out = LocMap(base, mark=over.mark)
    out.key_marks = dict(base.key_marks)
    for key, value in over.items():
        current = out.get(key)
        if isinstance(value, LocMap) and isinstance(current, LocMap):
            out[key] = deep_merge(current, value)
        else:
            out[key] = value
        out.key_marks[key] = over.key_marks.get(key, over.mark)
    return out


# --- the assembler ---------------------------------------------------------------------


class _TooManyIncludes(PipelineError):
    """Stops everything: past the limit, nothing more is read."""


class _Assembler:
    def __init__(self, project_dir: Path, rule_ctx: RuleContext) -> None:
        self.project_dir = project_dir
        self.rule_ctx = rule_ctx
        self.files: list[str] = []
        self.warnings: list[Diagnostic] = []
        self.errors: list[Diagnostic] = []
        self.count = 0
        self.cache: dict[str, LoadedFile] = {}
        self._project_files: list[str] | None = None

    def run(self, file: str, inputs: Mapping[str, Any] | None) -> Document:
        display = _normal(file.replace(os.sep, "/")) if not os.path.isabs(file) else file
        path = Path(file) if os.path.isabs(file) else self.project_dir / display
        if not os.path.isabs(file) and _through_symlink(self.project_dir, display):
            # As for include:local, but stricter: whatever the link points to (another file, one
            # outside the repository), nothing of it is read or shown.
            raise PipelineError(
                Diagnostic(
                    "the pipeline file is a symbolic link (or inside a linked folder): aicd reads it "
                    "only as a regular file committed in the repository; commit the file itself",
                    display,
                    1,
                    1,
                )
            )
        if not path.is_file():
            where = f"looked for {path}"
            raise PipelineError(
                Diagnostic(f"pipeline file not found ({where}); create it or name the right file", display)
            )
        loaded = self._load(path, display)
        args = _as_args(inputs)
        content = self._interpolate(loaded, args, display, None, None)
        self._raise_errors()
        root = self._expand(content, display, [display])
        self._raise_errors()
        return Document(root=root, files=tuple(self.files), warnings=self.warnings)

    def _raise_errors(self) -> None:
        if self.errors:
            raise PipelineError(list(self.errors))

    def _load(self, path: Path, display: str) -> LoadedFile:
        loaded = self.cache.get(display)
        if loaded is None:
            loaded = self.cache[display] = load_file_with_spec(path, display)
            self.files.append(display)
            self.warnings.extend(loaded.warnings)
        return loaded

    def _expand(self, content: LocMap, display: str, chain: list[str]) -> LocMap:
        """`content` with its `include:` replaced by the merged included files."""
        if "include" not in content:
            return content
        merged: LocMap | None = None
        for entry, mark in _entries(content):
            try:
                for sub in self._include(entry, mark, chain):
                    merged = sub if merged is None else deep_merge(merged, sub)
            except _TooManyIncludes:
                raise
            except PipelineError as exc:
                self.errors.extend(exc.diagnostics)
        own = content.copy_with()
        del own["include"]
        own.key_marks.pop("include", None)
        return own if merged is None else deep_merge(merged, own)

    def _include(self, entry: Any, mark: Mark, chain: list[str]) -> list[LocMap]:
        args: LocMap | None = None
        args_mark: Mark | None = None
        location: str | None
        if isinstance(entry, str):
            location = expand(entry, self.rule_ctx.variables)
            if _URL.match(location):
                raise PipelineError(_unsupported("remote", mark))
        elif isinstance(entry, LocMap):
            location, args, args_mark = self._mapping_entry(entry, mark)
            if location is None:
                return []
        else:
            raise PipelineError(
                _diag(
                    f"an include must be a file path or a mapping such as `local: ci/build.yml`, "
                    f"not {_kind(entry)}",
                    mark,
                )
            )
        out: list[LocMap] = []
        for path in self._local_paths(location, mark):
            self.count += 1
            if self.count > MAX_INCLUDES:
                self.errors.append(
                    _diag(
                        f"too many includes: more than {MAX_INCLUDES} included files (GitLab's limit, "
                        "repeats counted); include fewer files",
                        mark,
                    )
                )
                raise _TooManyIncludes(self.errors)
            if path in chain:
                loop = " -> ".join([*chain[chain.index(path) :], path])
                raise PipelineError(_diag(f"include loop: {loop}; remove one of these includes", mark))
            loaded = self._load(self.project_dir / path, path)
            before = len(self.errors)
            content = self._interpolate(loaded, args, path, args_mark, mark)
            if len(self.errors) > before:
                continue
            out.append(self._expand(content, path, [*chain, path]))
        return out

    def _mapping_entry(self, entry: LocMap, mark: Mark) -> tuple[str | None, LocMap | None, Mark | None]:
        """(local path, inputs, where the inputs are) of a mapping include; path None: rules say no."""
        unknown = [k for k in entry if k not in INCLUDE_KEYS]
        if unknown:
            raise PipelineError(
                _diag(
                    f"include: unknown key `{unknown[0]}`{did_you_mean(unknown[0], INCLUDE_KEYS)}; "
                    f"an include uses one of {', '.join(INCLUDE_KINDS[:5])} with optional rules and inputs",
                    entry.mark_of(unknown[0]),
                )
            )
        kinds = [k for k in INCLUDE_KINDS if k in entry]
        if not kinds:
            raise PipelineError(
                _diag(
                    "include: this entry does not say what to include; use `local: path/to/file.yml`",
                    entry.mark,
                )
            )
        if len(kinds) > 1:
            raise PipelineError(
                _diag(
                    f"include: each include must use only one of {', '.join(kinds)}; split it in two",
                    entry.mark_of(kinds[1]),
                )
            )
        if "rules" in entry and not self._rules_pass(entry["rules"], entry.mark_of("rules")):
            return None, None, None
        kind = kinds[0]
        if kind != "local":
            raise PipelineError(_unsupported(kind, entry.mark_of(kind)))
        local = entry["local"]
        if not isinstance(local, str) or not local:
            raise PipelineError(
                _diag(
                    f"include:local must be a file path such as `ci/build.yml`, not {_kind(local)}",
                    entry.mark_of("local"),
                )
            )
        args = entry.get("inputs")
        args_mark = entry.mark_of("inputs") if "inputs" in entry else None
        if args is not None and not isinstance(args, LocMap):
            raise PipelineError(
                _diag(
                    f"include:inputs must be a mapping of input names to values, not {_kind(args)}",
                    entry.mark_of("inputs"),
                )
            )
        return expand(local, self.rule_ctx.variables), args, args_mark

    def _rules_pass(self, rules: Any, mark: Mark) -> bool:
        if rules is None:
            return True
        if isinstance(rules, list):
            problems: list[Diagnostic] = []
            for i, rule in enumerate(rules):
                if not isinstance(rule, LocMap):
                    continue
                for key in rule:
                    if key not in INCLUDE_RULE_KEYS:
                        problems.append(
                            _diag(
                                f"include:rules[{i}]: `{key}` cannot be used in include rules; "
                                f"use {', '.join(INCLUDE_RULE_KEYS)}",
                                rule.mark_of(key),
                            )
                        )
                if "when" in rule and rule["when"] not in INCLUDE_RULE_WHEN:
                    problems.append(
                        _diag(
                            f"include:rules[{i}]: when must be never or always, not {rule['when']!r}",
                            rule.mark_of("when"),
                        )
                    )
            if problems:
                raise PipelineError(problems)
        else:
            raise PipelineError(
                _diag(
                    f"include:rules must be a list such as `- if: $CI_COMMIT_TAG`, not {_kind(rules)}", mark
                )
            )
        outcome = evaluate_rules(rules, self.rule_ctx, default_when="always", where="include:rules")
        return outcome.when != "never"

    def _local_paths(self, location: str, mark: Mark) -> list[str]:
        raw = location.replace("\\", "/").lstrip("/")
        if "*" in raw:
            pattern = _wildcard(raw)
            matches = [f for f in self._all_files() if pattern.match(f)]
            if not matches:
                raise PipelineError(
                    _diag(f"include:local `{location}` does not match any files in the project", mark)
                )
            paths = matches
        else:
            path = _normal(raw)
            if path in ("", ".") or path == ".." or path.startswith("../"):
                raise PipelineError(
                    _diag(
                        f"include:local `{location}` is outside the project directory; "
                        "included files must be inside the project",
                        mark,
                    )
                )
            paths = [path]
        for path in paths:
            if not path.lower().endswith((".yml", ".yaml")):
                raise PipelineError(
                    _diag(
                        f"include:local `{path}` is not a YAML file: its name must end in .yml or .yaml", mark
                    )
                )
            full = self.project_dir / path
            if not full.is_file():
                raise PipelineError(
                    _diag(
                        f"include:local file `{path}` does not exist (looked for {full}); "
                        "local includes are relative to the project root",
                        mark,
                    )
                )
            if not _inside(full, self.project_dir):
                raise PipelineError(
                    _diag(f"include:local `{path}` points outside the project directory", mark)
                )
        return paths

    def _all_files(self) -> list[str]:
        if self._project_files is None:
            files: list[str] = []
            for dirpath, dirnames, filenames in os.walk(self.project_dir):
                dirnames[:] = sorted(d for d in dirnames if d != ".git")
                rel = os.path.relpath(dirpath, self.project_dir).replace(os.sep, "/")
                prefix = "" if rel == "." else rel + "/"
                files.extend(prefix + name for name in filenames)
            files.sort()
            self._project_files = files
        return self._project_files

    # --- inputs ------------------------------------------------------------------

    def _interpolate(
        self,
        loaded: LoadedFile,
        args: LocMap | None,
        display: str,
        args_mark: Mark | None,
        include_mark: Mark | None,
    ) -> LocMap:
        where = include_mark or Mark(display, 1, 1)
        if loaded.header is None:
            if args:
                self.errors.append(
                    _diag(
                        f"inputs were given but `{display}` has no `spec:inputs` header; add one "
                        "(`spec:` / `inputs:` then `---`) or remove the inputs",
                        args_mark or where,
                    )
                )
            return loaded.content
        header = loaded.header
        values = _Inputs(
            loaded.spec, args or LocMap(), display, header.mark_of("spec"), args_mark or include_mark
        )
        if values.errors:
            self.errors.extend(values.errors)
            return loaded.content
        interpolator = _Interpolator(values.values, self.rule_ctx.variables, display)
        result = interpolator.value(loaded.content, loaded.content.mark)
        if interpolator.errors:
            self.errors.extend(interpolator.errors)
            return loaded.content
        if not isinstance(result, LocMap):  # pragma: no cover - a map stays a map
            return loaded.content
        return result


def _as_args(inputs: Mapping[str, Any] | None) -> LocMap | None:
    if inputs is None:
        return None
    if isinstance(inputs, LocMap):
        return inputs
    return LocMap(inputs)


def _entries(content: LocMap) -> list[tuple[Any, Mark]]:
    value = content["include"]
    key_mark = content.mark_of("include")
    if value is None:
        return []
    if isinstance(value, LocList):
        return [(item, mark_of(item, value.mark_of(i))) for i, item in enumerate(value)]
    return [(value, mark_of(value, key_mark))]


def _wildcard(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*?")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*?")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _normal(path: str) -> str:
    norm = posixpath.normpath(path)
    return "" if norm == "." else norm


def _through_symlink(root: Path, relative: str) -> bool:
    """Whether `relative` (under `root`), or a folder on the way to it, is a symbolic link."""
    current = root
    for part in relative.split("/"):
        current = current / part
        if current.is_symlink():
            return True
    return False


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return False
    return True


def _unsupported(kind: str, mark: Mark) -> Diagnostic:
    return _diag(
        f"include:{kind} is not supported: aicd runs without network access to other projects; "
        "copy the file into the repository and use include:local",
        mark,
    )


# --- spec:inputs -------------------------------------------------------------------------

INPUT_TYPES = ("string", "number", "boolean", "array")
INPUT_SPEC_KEYS = ("default", "description", "options", "regex", "type", "rules")


class _Inputs:
    """Input values of one include, checked against the file's `spec:inputs` (GitLab's messages)."""

    def __init__(
        self, spec: Any, args: LocMap, display: str, spec_mark: Mark, args_mark: Mark | None
    ) -> None:
        self.values: dict[str, Any] = {}
        self.errors: list[Diagnostic] = []
        self.display = display
        specs = self._specs(spec, spec_mark)
        if specs is None:
            return
        unknown = [k for k in args if k not in specs]
        if unknown:
            hint = did_you_mean(unknown[0], specs) if len(unknown) == 1 else ""
            self._add(
                f"unknown input arguments: {', '.join(unknown)}{hint}; "
                f"its spec:inputs are: {', '.join(specs) or 'none'}",
                args.mark_of(unknown[0]) if args.key_marks else (args_mark or spec_mark),
            )
        for name, item in specs.items():
            self._one(name, item, specs.mark_of(name), args, args_mark)

    def _specs(self, spec: Any, mark: Mark) -> LocMap | None:
        if spec is None:
            return LocMap()
        if not isinstance(spec, LocMap):
            self._add("spec must be a mapping with `inputs:`", mark)
            return None
        inputs = spec.get("inputs")
        if inputs is None:
            return LocMap()
        if not isinstance(inputs, LocMap):
            self._add("spec:inputs must be a mapping of input names", spec.mark_of("inputs"))
            return None
        return inputs

    def _add(self, message: str, mark: Mark) -> None:
        """A problem; named after the included file when it is located elsewhere (the include)."""
        prefix = "" if mark.file == self.display else f"`{self.display}`: "
        self.errors.append(_diag(prefix + message, mark))

    def _one(self, name: str, item: Any, mark: Mark, args: LocMap, args_mark: Mark | None) -> None:
        def error(message: str, where: Mark) -> None:
            self._add(f"`{name}` input: {message}", where)

        if item is None:
            item = LocMap()
        if not isinstance(item, LocMap):
            error("the input's spec must be a mapping (default, type, options, regex, description)", mark)
            return
        for key in item:
            if key not in INPUT_SPEC_KEYS:
                error(
                    f"unknown spec key `{key}`{did_you_mean(key, INPUT_SPEC_KEYS)}; "
                    f"use {', '.join(INPUT_SPEC_KEYS[:5])}",
                    item.mark_of(key),
                )
                return
        kind = item.get("type", "string")
        if kind not in INPUT_TYPES:
            self._add(
                f"header:spec:inputs:{name} input type unknown value: {kind}; "
                f"use one of {', '.join(INPUT_TYPES)}",
                item.mark_of("type"),
            )
            return
        given = args.get(name)
        value_mark = args.mark_of(name) if name in args else (args_mark or mark)
        has_default = "default" in item
        if given is None and not has_default:
            error("required value has not been provided", value_mark)
            return
        if has_default and not _is_type(item["default"], kind):
            error(f"default value is not {_a(kind)}", item.mark_of("default"))
            return
        from_default = given is None
        value = item["default"] if from_default else given
        where = item.mark_of("default") if from_default else value_mark
        if not _is_type(value, kind):
            error(f"provided value is not {_a(kind)}", where)
            return
        options = item.get("options")
        if isinstance(options, list) and value is not None:
            allowed = list(options)
            items = value if kind == "array" else [value]
            for one in items:
                if one not in allowed:
                    shown = f"`{_text(one)}`" if kind != "array" else _text(one)
                    error(f"{shown} cannot be used because it is not in the list of allowed options", where)
                    return
        regex = item.get("regex")
        if regex is not None and isinstance(value, str):
            try:
                compiled = re.compile(str(regex))
            except re.error:
                error("invalid regular expression", item.mark_of("regex"))
                return
            if not compiled.search(value):
                side = "default" if from_default else "provided"
                error(f"{side} value does not match required RegEx pattern", where)
                return
        self.values[name] = value


def _is_type(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    return isinstance(value, list)


def _a(kind: str) -> str:
    return f"an {kind}" if kind == "array" else f"a {kind}"


# --- $[[ ]] interpolation -------------------------------------------------------------------

_BLOCK = re.compile(r"\$\[\[\s*(\S.*?\S)\s*\]\]")
_TRUNCATE = re.compile(r"^truncate\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_SHELL_SAFE = re.compile(r"([^A-Za-z0-9_\-.,:+/@\n])")
MAX_FUNCTIONS = 3


class _Failed(Exception):
    pass


class _Interpolator:
    def __init__(self, inputs: dict[str, Any], variables: Mapping[str, str], display: str) -> None:
        self.context: dict[str, Any] = {"inputs": inputs}
        self.variables = variables
        self.display = display
        self.errors: list[Diagnostic] = []

    def value(self, value: Any, mark: Mark) -> Any:
        if isinstance(value, str):
            return self.text(value, mark) if "$[[" in value else value
        if isinstance(value, LocMap):
            return self._map(value)
        if isinstance(value, LocList):
            return self._list(value)
        if isinstance(value, Reference) and any("$[[" in part for part in value.path):
            return Reference(tuple(_key(self.text(part, value.mark)) for part in value.path), value.mark)
        return value

    def _map(self, value: LocMap) -> LocMap:
        out = LocMap(mark=value.mark)
        changed = False
        for key, item in value.items():
            key_mark = value.key_marks.get(key, value.mark)
            new_key = key
            if "$[[" in key:
                new_key = _key(self.text(key, key_mark))
                changed = changed or new_key != key
            new_item = self.value(item, mark_of(item, key_mark))
            changed = changed or new_item is not item
            out[new_key] = new_item
            out.key_marks[new_key] = key_mark
        return out if changed else value

    def _list(self, value: LocList) -> LocList:
        out = LocList(mark=value.mark)
        changed = False
        for i, item in enumerate(value):
            new_item = self.value(item, mark_of(item, value.mark_of(i)))
            changed = changed or new_item is not item
            out.append(new_item)
        out.item_marks = list(value.item_marks)
        return out if changed else value

    def text(self, text: str, mark: Mark) -> Any:
        blocks = list(_BLOCK.finditer(text))
        if not blocks:
            return text
        try:
            if len(blocks) == 1 and blocks[0].group(0) == text:
                return self.block(blocks[0].group(1), blocks[0].group(0), mark)
            result = _BLOCK.sub(lambda m: _text(self.block(m.group(1), m.group(0), mark)), text)
        except _Failed:
            return text
        if len(result) > MAX_INTERPOLATED_STRING:
            self._error("the interpolated text is larger than 1 MiB; pass smaller inputs", mark)
            return text
        return result

    def _error(self, message: str, mark: Mark) -> None:
        if len(self.errors) < 20:
            self.errors.append(_diag(message, mark))

    def block(self, data: str, whole: str, mark: Mark) -> Any:
        access, *functions = (part.strip() for part in data.split("|"))
        objects = access.split(".", 4)
        if objects[0] == "matrix":
            return whole  # `$[[ matrix.X ]]` belongs to needs:parallel:matrix, not to inputs
        if len(objects) <= 1:
            self._error(f"invalid interpolation access pattern `{access}`; write `$[[ inputs.name ]]`", mark)
            raise _Failed
        if len(access.encode()) > 1024:
            self._error("maximum interpolation expression size exceeded", mark)
            raise _Failed
        value: Any = self.context
        for name in objects:
            if not isinstance(value, Mapping) or name not in value:
                known = value if isinstance(value, Mapping) else {}
                self._error(f"unknown interpolation key: `{name}`{did_you_mean(name, known)}", mark)
                raise _Failed
            value = value[name]
        if len(functions) > MAX_FUNCTIONS:
            self._error(f"too many functions in interpolation block (at most {MAX_FUNCTIONS})", mark)
            raise _Failed
        for function in functions:
            value = self._function(function, value, mark)
        return value

    def _function(self, function: str, value: Any, mark: Mark) -> Any:
        name = function.split("(", 1)[0].strip()
        if name in ("expand_vars", "posix_escape", "truncate") and not isinstance(value, str):
            self._error(
                f"error in `{name}` function: invalid input type: {name} can only be used with string inputs",
                mark,
            )
            raise _Failed
        if function == "expand_vars":
            return _expand_existing(value, self.variables)
        if function == "posix_escape":
            return _shell_escape(value)
        match = _TRUNCATE.match(function)
        if match:
            offset, length = int(match.group(1)), int(match.group(2))
            return value[offset : offset + length]
        self._error(
            f"no function matching `{function}`: check that the function name, arguments, and types are "
            "correct (functions: expand_vars, truncate(offset,length), posix_escape)",
            mark,
        )
        raise _Failed


def _expand_existing(text: str, variables: Mapping[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return variables[name] if name in variables else match.group(0)

    return _VARIABLE.sub(sub, text)


def _shell_escape(text: str) -> str:
    if not text:
        return "''"
    return _SHELL_SAFE.sub(r"\\\1", text).replace("\n", "'\n'")


def _text(value: Any) -> str:
    """An input value inside a string, as GitLab writes it (Ruby's to_s)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    return str(value)


def _key(value: Any) -> str:
    return value if isinstance(value, str) else _text(value)


# --- helpers ------------------------------------------------------------------------------------


_kind = describe


def _diag(message: str, mark: Mark, severity: str = "error") -> Diagnostic:
    return Diagnostic(message, mark.file, mark.line, mark.column, severity=severity)
