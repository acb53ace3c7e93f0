"""Read one pipeline YAML file into LocMap / LocList values with file:line:col.

The file is read from libyaml's event stream (PyYAML's C parser when it is
there) by a small builder with an explicit stack, so that limits are checked
before anything is built and no input can overflow Python's stack:

- files up to 10 MiB; at most 1,000,000 YAML nodes, counting every alias use
  with the full size of what it points at (a "billion laughs" bomb names the
  line of its alias); nesting up to 100 levels; no NUL bytes; UTF-8 only.
- `!reference [job, key]` becomes a :class:`Reference`; merge keys `<<`
  (a mapping or a list of them) work as in YAML 1.1; anchors and aliases work
  (an alias shares the value of its anchor: nobody may mutate loaded values).
- Scalars follow YAML 1.1 as GitLab's Ruby loader does (`yes`/`on` are
  booleans, `012` is octal); dates stay strings; keys are always strings.
- A duplicated key: the last one wins, as in GitLab (Ruby's YAML loader), and
  a warning names both places (the reference runner warns too).
- Two documents whose first holds only `spec:` are a header and the content
  (GitLab's `spec:inputs`); see :func:`load_file_with_spec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aicd.errors import Diagnostic, PipelineError
from aicd.pipeline.nodes import LocList, LocMap, Mark, Reference
from aicd.pipeline.yaml_lib import yaml

if TYPE_CHECKING:
    from aicd.pipeline.include import Document
    from aicd.pipeline.rules import RuleContext

MAX_FILE_MIB = 10
MAX_FILE_BYTES = MAX_FILE_MIB * 1024 * 1024
MAX_NODES = 1_000_000
MAX_DEPTH = 100
MAX_DOCUMENTS = 2

_Loader: Any = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader
_RESOLVER = yaml.resolver.Resolver()  # YAML 1.1 implicit tags of plain scalars
_CONSTRUCTOR = yaml.constructor.SafeConstructor()  # int, float, bool, ... from their text
_YAML = "tag:yaml.org,2002:"
_STR = _YAML + "str"
_MERGE = _YAML + "merge"


@dataclass
class LoadedFile:
    """One file: its content document, its `spec:` header (if any) and warnings."""

    content: LocMap
    spec: Any = None  # the value of `spec:` in the header document; None without a header
    header: LocMap | None = None  # the whole header document
    warnings: list[Diagnostic] = field(default_factory=list)


def load_document(
    project_dir: Path, file: str, rule_ctx: RuleContext, *, inputs: Mapping[str, Any] | None = None
) -> tuple[LocMap, Document]:
    """Includes merged, then extends, !reference and default: applied (see aicd.pipeline.extends)."""
    from aicd.pipeline.extends import load_document as load

    return load(project_dir, file, rule_ctx, inputs=inputs)


def load_file(path: Path, display: str) -> LocMap:
    """The content document of the pipeline file at `path`, named `display` in marks."""
    return load_file_with_spec(path, display).content


def load_text(text: str, display: str) -> LocMap:
    """The content document of pipeline YAML `text`, named `display` in marks."""
    return load_text_with_spec(text, display).content


def load_file_with_spec(path: Path, display: str) -> LoadedFile:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise PipelineError(Diagnostic(f"file not found (looked for {path})", display)) from None
    except OSError as exc:
        raise PipelineError(Diagnostic(f"cannot read the file: {exc.strerror or exc}", display)) from None
    if path.is_dir():
        raise PipelineError(Diagnostic(f"is a directory, not a YAML file ({path})", display))
    _check_size(size, display)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PipelineError(Diagnostic(f"cannot read the file: {exc.strerror or exc}", display)) from None
    _check_size(len(data), display)
    return load_text_with_spec(_decode(data, display), display)


def load_text_with_spec(text: str, display: str) -> LoadedFile:
    if len(text) > MAX_FILE_BYTES or (len(text) * 4 > MAX_FILE_BYTES and len(text.encode()) > MAX_FILE_BYTES):
        _check_size(len(text.encode()), display)
    nul = text.find("\x00")
    if nul >= 0:
        line, column = _line_col(text, nul)
        raise PipelineError(
            Diagnostic(
                "the file contains a NUL byte; a pipeline file must be UTF-8 text", display, line, column
            )
        )
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        documents, warnings = _Builder(text, display).run()
    except RecursionError:
        raise PipelineError(Diagnostic("the YAML is nested too deeply to read", display)) from None
    return _pick_content(documents, warnings, display)


# --- checks before parsing -----------------------------------------------------------


def _check_size(size: int, display: str) -> None:
    if size > MAX_FILE_BYTES:
        mib = size / (1024 * 1024)
        raise PipelineError(
            Diagnostic(
                f"file is {mib:.1f} MiB; aicd reads pipeline files up to {MAX_FILE_MIB} MiB",
                display,
                1,
                1,
            )
        )


def _decode(data: bytes, display: str) -> str:
    nul = data.find(b"\x00")
    if nul >= 0 and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        line, column = _line_col_bytes(data, nul)
        raise PipelineError(
            Diagnostic(
                "the file contains a NUL byte; a pipeline file must be UTF-8 text", display, line, column
            )
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _line_col_bytes(data, exc.start)
        bad = data[exc.start : exc.start + 1].hex()
        raise PipelineError(
            Diagnostic(f"the file is not valid UTF-8 (byte 0x{bad}); save it as UTF-8", display, line, column)
        ) from None


def _line_col(text: str, index: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


def _line_col_bytes(data: bytes, index: int) -> tuple[int, int]:
    line_start = data.rfind(b"\n", 0, index) + 1
    column = len(data[line_start:index].decode("utf-8", errors="replace")) + 1
    return data.count(b"\n", 0, index) + 1, column


# --- documents -------------------------------------------------------------------------


def _pick_content(documents: list[tuple[Any, Mark]], warnings: list[Diagnostic], display: str) -> LoadedFile:
    # Empty documents (a lone `---`, only comments) are skipped, as GitLab does.
    docs = [(value, mark) for value, mark in documents if value is not None]
    if not docs:
        raise PipelineError(
            Diagnostic("the file is empty (no YAML content); add at least one job", display, 1, 1)
        )
    if len(docs) > MAX_DOCUMENTS:
        mark = docs[MAX_DOCUMENTS][1]
        raise PipelineError(
            _diag(
                f"the file holds {len(docs)} YAML documents; GitLab allows at most 2: "
                "a `spec:` header, `---`, then the pipeline",
                mark,
            )
        )
    header: LocMap | None = None
    content, mark = docs[0]
    if len(docs) == 2:
        first = docs[0][0]
        if isinstance(first, LocMap) and "spec" in first:
            header = first
            content, mark = docs[1]
            extra = [k for k in first if k != "spec"]
            if extra:
                raise PipelineError(
                    _diag(
                        f"the header document may hold only `spec:`, not {', '.join(extra)}; "
                        "move the other keys below the `---` line",
                        first.mark_of(extra[0]),
                    )
                )
        else:
            # GitLab reads only the first document when there is no `spec:` header.
            warnings.append(
                _diag(
                    "a second YAML document (after `---`) is ignored: only a `spec:` header may come "
                    "before the pipeline",
                    docs[1][1],
                    "warning",
                )
            )
    if not isinstance(content, LocMap):
        raise PipelineError(
            _diag(
                f"the top level must be a mapping of keywords and jobs (such as `build:` with a "
                f"`script:`), not {_kind(content)}",
                mark,
            )
        )
    spec = header.get("spec") if header is not None else None
    return LoadedFile(content=content, spec=spec, header=header, warnings=warnings)


# --- the builder ------------------------------------------------------------------------

_MAP = 0
_SEQ = 1
_REF = 2
_PENDING = object()  # an anchor whose collection is still open
_MERGE_KEY = object()


class _Frame:
    __slots__ = ("anchor", "has_key", "key", "key_mark", "kind", "mark", "merges", "size", "value")

    def __init__(self, kind: int, value: Any, mark: Mark, anchor: str | None) -> None:
        self.kind = kind
        self.value = value
        self.mark = mark
        self.anchor = anchor
        self.size = 1
        self.key: Any = None  # None: expecting a key; else the pending key (or _MERGE_KEY)
        self.key_mark: Mark = mark
        self.merges: list[tuple[Any, Mark]] = []
        self.has_key = False


def _check_escapes(value: str, mark: Mark) -> None:
    """A NUL written as an escape: no file name, environment variable or shell takes it, so it
    would fail the job at run time; refuse it here, where it is. (PyYAML refuses lone surrogates.)"""
    if "\x00" in value:
        raise PipelineError(
            _diag(
                "the string holds a NUL character (\\0): no job name, variable, file name or command "
                "can contain one; remove it",
                mark,
            )
        )


class _Builder:
    def __init__(self, text: str, display: str) -> None:
        self.text = text
        self.display = display
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.total = 0
        self.warnings: list[Diagnostic] = []
        self.stack: list[_Frame] = []
        self.documents: list[tuple[Any, Mark]] = []
        self.doc_value: Any = None
        self.doc_mark = Mark(display, 1, 1)
        self.scalar_cache: dict[str, Any] = {}

    def mark(self, event: Any) -> Mark:
        m = event.start_mark
        return Mark(self.display, m.line + 1, m.column + 1)

    def run(self) -> tuple[list[tuple[Any, Mark]], list[Diagnostic]]:
        loader = _Loader(self.text)
        try:
            self._events(loader)
        except yaml.MarkedYAMLError as exc:
            raise PipelineError(self._syntax(exc)) from None
        except yaml.YAMLError as exc:
            raise PipelineError(self._reader(exc)) from None
        finally:
            loader.dispose()
        return self.documents, self.warnings

    def _events(self, loader: Any) -> None:
        scalar_event = yaml.ScalarEvent
        alias_event = yaml.AliasEvent
        seq_start = yaml.SequenceStartEvent
        map_start = yaml.MappingStartEvent
        collection_end = (yaml.SequenceEndEvent, yaml.MappingEndEvent)
        stack = self.stack
        while True:
            event = loader.get_event()
            kind = type(event)
            if kind is scalar_event:
                self._count(1, event)
                value = self._scalar(event)
                if event.anchor:
                    self.anchors[event.anchor] = (value, 1)
                self._add(value, self.mark(event), 1, scalar=True)
            elif kind is alias_event:
                found = self.anchors.get(event.anchor)
                if found is None:
                    raise PipelineError(
                        _diag(
                            f"alias *{event.anchor} has no anchor &{event.anchor} before it", self.mark(event)
                        )
                    )
                value, size = found
                if value is _PENDING:
                    raise PipelineError(
                        _diag(
                            f"alias *{event.anchor} is inside its own anchor &{event.anchor} (a recursive "
                            "alias); YAML pipelines cannot refer to themselves",
                            self.mark(event),
                        )
                    )
                self._count(size, event, alias=event.anchor)
                self._add(value, self.mark(event), size, scalar=not isinstance(value, (LocMap, LocList)))
            elif kind is map_start or kind is seq_start:
                self._count(1, event)
                mark = self.mark(event)
                if len(stack) >= MAX_DEPTH:
                    raise PipelineError(
                        _diag(
                            f"YAML nested too deeply (more than {MAX_DEPTH} levels); aicd reads pipeline "
                            f"files nested up to {MAX_DEPTH} levels: flatten the structure",
                            mark,
                        )
                    )
                tag = event.tag
                if kind is map_start:
                    if tag == "!reference":
                        raise PipelineError(_diag(_REF_SHAPE, mark))
                    frame = _Frame(_MAP, LocMap(mark=mark), mark, event.anchor)
                elif tag == "!reference":
                    frame = _Frame(_REF, [], mark, event.anchor)
                else:
                    frame = _Frame(_SEQ, LocList(mark=mark), mark, event.anchor)
                if event.anchor:
                    self.anchors[event.anchor] = (_PENDING, 0)
                stack.append(frame)
            elif kind in collection_end:
                frame = stack.pop()
                value = self._finish(frame)
                if frame.anchor:
                    self.anchors[frame.anchor] = (value, frame.size)
                self._add(value, frame.mark, frame.size, scalar=False)
            elif kind is yaml.DocumentStartEvent:
                self.doc_value = None
                self.doc_mark = self.mark(event)
            elif kind is yaml.DocumentEndEvent:
                self.documents.append((self.doc_value, self.doc_mark))
                self.doc_value = None
            elif kind is yaml.StreamEndEvent:
                return

    def _count(self, size: int, event: Any, alias: str | None = None) -> None:
        self.total += size
        if self.total <= MAX_NODES:
            return
        if alias is not None:
            raise PipelineError(
                _diag(
                    f"alias *{alias} expands to {size:,} YAML nodes, which takes the file past "
                    f"{MAX_NODES:,} nodes (aliases of aliases multiply: a 'billion laughs' bomb); "
                    "use fewer nested aliases",
                    self.mark(event),
                )
            )
        raise PipelineError(
            _diag(
                f"the file has more than {MAX_NODES:,} YAML nodes; split it or make it smaller",
                self.mark(event),
            )
        )

    def _scalar(self, event: Any) -> Any:
        tag = event.tag
        value: str = event.value
        if event.style == '"':  # only a double-quoted scalar has escapes (\0)
            _check_escapes(value, self.mark(event))
        if tag is None:
            if not event.implicit[0]:
                return value  # quoted or block scalar: a string
            cached = self.scalar_cache.get(value, self)
            if cached is not self:
                return cached
            tag = _RESOLVER.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
            result = self._construct(tag, value, event)
            if len(self.scalar_cache) < 4096:
                self.scalar_cache[value] = result
            return result
        if tag == "!reference":
            raise PipelineError(_diag(_REF_SHAPE, self.mark(event)))
        if tag.startswith(_YAML):
            return self._construct(tag, value, event)
        return value  # `!` or an unknown local tag: the text itself

    def _construct(self, tag: str, value: str, event: Any) -> Any:
        if tag == _STR or tag == _YAML + "timestamp" or tag == _YAML + "value":
            return value
        if tag == _MERGE:
            return _MERGE_KEY
        constructor = _CONSTRUCTOR.yaml_constructors.get(tag)
        if constructor is None:
            raise PipelineError(_diag(f"unsupported YAML tag !!{tag[len(_YAML) :]}", self.mark(event)))
        try:
            return constructor(_CONSTRUCTOR, yaml.ScalarNode(tag, value))
        except (yaml.YAMLError, ValueError, TypeError):
            raise PipelineError(
                _diag(f"{value!r} is not a valid !!{tag[len(_YAML) :]} value", self.mark(event))
            ) from None

    def _add(self, value: Any, mark: Mark, size: int, *, scalar: bool) -> None:
        if not self.stack:
            self.doc_value = value
            self.doc_mark = mark
            return
        frame = self.stack[-1]
        frame.size += size
        kind = frame.kind
        if kind == _SEQ:
            frame.value.append(value)
            frame.value.item_marks.append(mark)
        elif kind == _REF:
            if not scalar or value is _MERGE_KEY or isinstance(value, (LocMap, LocList, Reference)):
                raise PipelineError(_diag(_REF_SHAPE, frame.mark))
            frame.value.append(_key_text(value))
        elif not frame.has_key:
            # a key
            if not scalar or isinstance(value, Reference):
                raise PipelineError(
                    _diag("a mapping key must be a plain value such as `build`, not a list or mapping", mark)
                )
            frame.key = value if value is _MERGE_KEY else _key_text(value)
            frame.key_mark = mark
            frame.has_key = True
        else:
            frame.has_key = False
            key = frame.key
            if key is _MERGE_KEY:
                self._merge_value(frame, value, mark)
                return
            target: LocMap = frame.value
            if key in target:
                first = target.key_marks[key]
                self.warnings.append(
                    _diag(
                        f"duplicated key '{key}' (first at line {first.line}); the last one wins, "
                        "as in GitLab",
                        frame.key_mark,
                        "warning",
                    )
                )
            target[key] = value
            target.key_marks[key] = frame.key_mark

    def _merge_value(self, frame: _Frame, value: Any, mark: Mark) -> None:
        if isinstance(value, LocMap):
            frame.merges.append((value, mark))
            return
        if isinstance(value, LocList) and all(isinstance(v, LocMap) for v in value):
            # Earlier mappings in the list win: apply them last.
            for item, item_mark in reversed(list(zip(value, value.item_marks, strict=False))):
                frame.merges.append((item, item_mark))
            return
        raise PipelineError(
            _diag("the value of a merge key `<<` must be a mapping (`<<: *anchor`) or a list of them", mark)
        )

    def _finish(self, frame: _Frame) -> Any:
        if frame.kind == _SEQ:
            return frame.value
        if frame.kind == _REF:
            if not frame.value:
                raise PipelineError(_diag(_REF_SHAPE, frame.mark))
            return Reference(tuple(frame.value), frame.mark)
        if frame.has_key:  # a key without value cannot happen in valid YAML; be safe
            frame.value[frame.key] = None
        if not frame.merges:
            return frame.value
        own: LocMap = frame.value
        merged = LocMap(mark=own.mark)
        for source, source_mark in frame.merges:
            for key, item in source.items():
                merged[key] = item
                merged.key_marks[key] = source.key_marks.get(key, source_mark)
        for key, item in own.items():
            merged[key] = item
            merged.key_marks[key] = own.key_marks[key]
        return merged

    # --- errors --------------------------------------------------------------------

    def _syntax(self, exc: yaml.MarkedYAMLError) -> Diagnostic:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        column = mark.column + 1 if mark is not None else 0
        problem = exc.problem or "invalid YAML"
        words = f"YAML syntax error: {problem}"
        if exc.context:
            words += f" ({exc.context})"
        if mark is not None and mark.line >= 0:
            lines = self.text.split("\n", mark.line + 1)
            if mark.line < len(lines):
                text_line = lines[mark.line]
                at = text_line[mark.column : mark.column + 1]
                if at == "\t" or (
                    problem.startswith("found character") and "\t" in text_line[: mark.column + 1]
                ):
                    words += "; YAML does not allow tabs for indentation: indent with spaces"
        if "exceeded maximum nesting depth" in problem:
            words = (
                f"YAML nested too deeply (more than {MAX_DEPTH} levels); aicd reads pipeline files "
                f"nested up to {MAX_DEPTH} levels: flatten the structure"
            )
        return Diagnostic(words, self.display, line, column)

    def _reader(self, exc: yaml.YAMLError) -> Diagnostic:
        position = getattr(exc, "position", None)
        character = getattr(exc, "character", None)
        if isinstance(position, int):
            line, column = _line_col(self.text, min(position, len(self.text)))
            what = f"#x{character:04x}" if isinstance(character, int) else "a control character"
            return Diagnostic(
                f"the file contains the control character {what}, which YAML does not allow; remove it",
                self.display,
                line,
                column,
            )
        return Diagnostic(f"cannot read the YAML: {exc}", self.display)


_REF_SHAPE = "!reference needs a list of names, such as `!reference [.setup, script]`"


def _key_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Reference):
        return "a !reference"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    return f"a {type(value).__name__} ({value!r})"


def _diag(message: str, mark: Mark, severity: str = "error") -> Diagnostic:
    return Diagnostic(message, mark.file, mark.line, mark.column, severity=severity)
