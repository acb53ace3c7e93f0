"""JSON for frozen dataclasses, checked against their type hints on the way in.

Supports what the IR uses: str, int, float, bool, None, Literal, unions with
None, `tuple[X, ...]`, fixed tuples, `dict[str, X]` and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from functools import cache
from typing import Any, TypeVar, Union, get_args, get_origin

T = TypeVar("T")


_LEAVES = frozenset((str, int, float, bool, type(None)))
_FIELDS: dict[type, tuple[str, ...] | None] = {}  # class -> its dataclass fields (None: not one)


def to_data(obj: Any) -> Any:
    """A dataclass tree as JSON-ready lists/dicts."""
    cls = type(obj)
    if cls in _LEAVES:
        return obj
    try:
        names = _FIELDS[cls]
    except KeyError:
        names = _FIELDS[cls] = (
            tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else None
        )
    if names is not None:
        return {name: to_data(getattr(obj, name)) for name in names}
    if isinstance(obj, (tuple, list)):
        return [to_data(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_data(v) for k, v in obj.items()}
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(to_data(obj), separators=(",", ":"))


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fail(path: str, expected: str, value: Any) -> ValueError:
    return ValueError(f"{path or 'value'}: expected {expected}, got {type(value).__name__} {value!r:.60}")


def from_data(tp: Any, value: Any, path: str = "") -> Any:
    """Convert JSON data to `tp`, raising ValueError naming the bad field."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise _fail(path, f"an object for {tp.__name__}", value)
        hints = _hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = set(value) - names
        if unknown:
            raise ValueError(f"{path or tp.__name__}: unknown field(s) {', '.join(sorted(unknown))}")
        kwargs = {k: from_data(hints[k], v, f"{path}.{k}" if path else k) for k, v in value.items()}
        try:
            return tp(**kwargs)
        except TypeError as exc:  # a required field is missing
            raise ValueError(f"{path or tp.__name__}: {exc}") from None
    if origin is Union or origin is types.UnionType:
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return from_data(arg, value, path)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(errors[0] if len(errors) == 1 else _fail(path, str(tp), value))
    if origin is typing.Literal:
        if value not in get_args(tp):
            raise _fail(path, " or ".join(map(repr, get_args(tp))), value)
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise _fail(path, "a list", value)
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_data(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise _fail(path, f"a list of {len(args)}", value)
        return tuple(
            from_data(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise _fail(path, "an object", value)
        _, vt = get_args(tp)
        return {str(k): from_data(vt, v, f"{path}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(path, "a number", value)
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(path, "an integer", value)
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise _fail(path, tp.__name__, value)
        return value
    if tp is type(None):
        if value is not None:
            raise _fail(path, "null", value)
        return None
    raise TypeError(f"codec: unsupported type {tp!r} at {path}")


def loads(cls: type[T], text: str | bytes) -> T:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    result: T = from_data(cls, data)
    return result
