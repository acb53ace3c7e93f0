"""aicd.dataclass_cache: `@dataclass` methods compiled once, kept between processes (issue 17).

A class made with the kept code must be the class `exec` would have made: the same methods
(bytecode, names, constants, file name, annotations), the same behaviour. The file is written at
exit, read at the next start, ignored when unreadable, and never written with bytecode writing off.
"""

from __future__ import annotations

import builtins
import dataclasses
import marshal
import subprocess
import sys
from pathlib import Path
from types import FunctionType
from typing import Any

import pytest

from aicd import dataclass_cache

SHAPES: list[dict[str, Any]] = [
    {},
    {"frozen": True},
    {"frozen": True, "slots": True},
    {"order": True, "kw_only": True},
    {"eq": False, "repr": False},
    {"unsafe_hash": True},
]


def make(options: dict[str, Any]) -> type:
    class Thing:
        a: int
        b: str = "x"
        c: list[int] = dataclasses.field(default_factory=list)
        d: dataclasses.InitVar[int | None] = None

        def __post_init__(self, d: int | None) -> None:
            pass

    return dataclasses.dataclass(**options)(Thing)


def methods(cls: type) -> dict[str, FunctionType]:
    out = {}
    for name, value in vars(cls).items():
        func = getattr(value, "__wrapped__", value)  # __repr__ is wrapped by reprlib
        if isinstance(func, FunctionType) and func.__code__.co_filename == "<string>":
            out[name] = func
    return out


def code_facts(func: FunctionType) -> tuple[Any, ...]:
    c = func.__code__
    return (
        c.co_code,
        c.co_consts,
        c.co_names,
        c.co_varnames,
        c.co_filename,
        c.co_name,
        c.co_qualname,
        c.co_flags,
        c.co_argcount,
        c.co_kwonlyargcount,
        func.__defaults__,
        func.__kwdefaults__,
        func.__annotations__,
    )


@pytest.fixture
def keep_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The code of this module's classes kept too, in files under tmp_path."""
    folder = tmp_path / "__pycache__"
    monkeypatch.setattr(dataclass_cache, "kept", lambda module: True)
    monkeypatch.setattr(dataclass_cache, "cache_path", lambda module: folder / f"{module}.marshal")
    monkeypatch.setattr(dataclass_cache, "_CODE", {})
    monkeypatch.setattr(dataclass_cache, "_NEW", set())
    return folder


@pytest.mark.parametrize("options", SHAPES, ids=[str(s) for s in SHAPES])
def test_classes_are_those_exec_would_make(
    options: dict[str, Any], monkeypatch: pytest.MonkeyPatch, keep_here: Path
) -> None:
    assert dataclasses.exec is dataclass_cache._exec  # type: ignore[attr-defined]  # importing aicd installed it
    cached = make(options)
    assert dataclass_cache._CODE[__name__]
    again = make(options)  # from the kept code this time
    monkeypatch.setattr(dataclasses, "exec", builtins.exec, raising=False)
    plain = make(options)
    for cls in (cached, again):
        got, want = methods(cls), methods(plain)
        assert got.keys() == want.keys() and want
        for name in want:
            assert code_facts(got[name]) == code_facts(want[name]), name
    # and behave alike
    init_kwargs = {"a": 1, "c": [2]} if options.get("kw_only") else {}
    one = cached(**init_kwargs) if init_kwargs else cached(1, "y", [2])
    ref = plain(**init_kwargs) if init_kwargs else plain(1, "y", [2])
    if options.get("repr", True):
        assert repr(one) == repr(ref)
    assert (one == one, one == ref) == (ref == ref, False)
    if options.get("frozen"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            one.a = 2  # type: ignore[attr-defined]


def test_future_annotations_of_the_caller_are_not_inherited() -> None:
    """This module has `from __future__ import annotations`; the generated __init__'s
    annotations must still be the objects (as exec from dataclasses makes them), not strings."""

    @dataclasses.dataclass
    class WithTypes:
        n: int

    assert WithTypes.__init__.__annotations__["n"] == "int"  # the field's own annotation, as written
    assert WithTypes.__init__.__annotations__["return"] is None


def test_kept_code_is_written_read_and_bad_files_ignored(
    keep_here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    make({"frozen": True})
    assert {__name__} == dataclass_cache._NEW
    dataclass_cache.save()
    path = keep_here / f"{__name__}.marshal"
    kept = dataclass_cache._read(path)
    assert kept and kept.keys() == dataclass_cache._CODE[__name__].keys()
    assert not dataclass_cache._NEW
    assert not list(keep_here.glob("*.tmp"))
    path.write_bytes(b"not marshal data")
    assert dataclass_cache._read(path) == {}
    path.write_bytes(marshal.dumps([1, 2]))
    assert dataclass_cache._read(path) == {}
    path.write_bytes(marshal.dumps(("3.11.0 another build", kept)))  # another interpreter's bytecode
    assert dataclass_cache._read(path) == {}
    # bytecode writing off: nothing written
    path.unlink()
    dataclass_cache._NEW.add(__name__)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    dataclass_cache.save()
    assert not path.exists()


def test_only_aicds_classes_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataclass_cache, "_CODE", {})
    monkeypatch.setattr(dataclass_cache, "_NEW", set())
    make({})
    assert __name__ not in dataclass_cache._CODE and not dataclass_cache._NEW
    assert dataclass_cache.kept("aicd.pipeline.ir") and not dataclass_cache.kept("aicdx")


def test_a_new_process_reads_the_kept_code(tmp_path: Path) -> None:
    """Two processes: the first writes what it compiled, the second compiles nothing."""
    probe = (
        "import sys, dataclasses\n"
        "from aicd import dataclass_cache as c\n"
        f"c.cache_path = lambda m: __import__('pathlib').Path({str(tmp_path)!r}) / m\n"
        "c.kept = lambda m: True\n"
        "@dataclasses.dataclass(frozen=True)\n"
        "class P:\n"
        "    x: int\n"
        "    y: str = ''\n"
        "print(len(c._NEW), P(1) == P(1), hash(P(1)) == hash(P(1)))\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=_env())
        for _ in range(2)
    ]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr + runs[1].stderr
    first, second = (r.stdout.split() for r in runs)
    assert first == ["1", "True", "True"]
    assert second == ["0", "True", "True"]


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env
