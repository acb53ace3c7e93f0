"""Compiled `@dataclass` methods kept between processes, as `.pyc` files keep modules.

`@dataclass` writes the source of every method it adds (`__init__`, `__repr__`, `__eq__`,
`__hash__`, and `__setattr__`/`__delattr__` when frozen) and hands it to `exec`, which parses
and compiles it again in every process: measured with callgrind, ~4 M instructions per frozen
class, 82% of it in parsing and compiling, and ~35% of a small `aicd run` (issue 17: 67 classes
on its path). The source only depends on the class's fields and options, so its compiled code
can be kept: `install` gives the `dataclasses` module an `exec` (a module global, found before
the builtin) that compiles each source once, exactly as `exec` would (same file name
`<string>`, no inherited `__future__` flags, same optimisation level), keeps the code objects,
and runs them with the same globals and locals. Nothing else changes: the classes, their
methods, their tracebacks and their annotations are what `exec` would have made.

Only aicd's own classes are kept, one file per module (the module of the class, as
`dataclasses` passes its globals): `aicd/__pycache__/dataclass-methods.<module>.<tag>.opt<N>.marshal`,
read when the module makes its first dataclass, written with `marshal` at the end of a process
that compiled new code for it, unless bytecode writing is off (`PYTHONDONTWRITEBYTECODE`, `-B`)
or the folder is read-only, like the `.pyc` files beside them. A process reads the code of the
modules it imports, nothing more. Entries are looked up by their exact source, so an entry is
never stale; a file this interpreter cannot read, or written by another Python
(`sys.version`), is ignored and replaced.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import marshal
import os
import sys
from pathlib import Path
from types import CodeType
from typing import Any

# the interpreter that compiled the kept code (a new Python, even a patch release, compiles again)
_BUILD = f"{sys.version} {sys.implementation.cache_tag}"
_CODE: dict[str, dict[str, CodeType]] = {}  # module -> source -> its compiled code
_NEW: set[str] = set()  # modules for which this process compiled code
_STATE = {"installed": False}


def cache_path(module: str) -> Path:
    name = f"dataclass-methods.{module}.{sys.implementation.cache_tag}.opt{sys.flags.optimize}.marshal"
    return Path(__file__).with_name("__pycache__") / name


def kept(module: str) -> bool:
    """Whether the classes of `module` have their code kept: aicd's own."""
    return module == "aicd" or module.startswith("aicd.")


def install() -> None:
    """Give `dataclasses` the caching `exec` (once per process)."""
    if _STATE["installed"]:
        return
    import dataclasses

    _STATE["installed"] = True
    dataclasses.exec = _exec  # type: ignore[attr-defined]


def _exec(
    source: str | CodeType,
    globals: dict[str, Any] | None = None,
    locals: dict[str, Any] | None = None,
    /,
) -> None:
    """`exec`, with the compiled code of a source string kept (see the module's doc)."""
    if globals is None:  # as exec: the caller's namespaces
        frame = sys._getframe(1)
        globals = frame.f_globals
        if locals is None:
            locals = frame.f_locals
    if isinstance(source, str):
        module = globals.get("__name__")
        codes = _codes(module) if isinstance(module, str) and kept(module) else None
        code = None if codes is None else codes.get(source)
        if code is None:
            # what exec(source) compiles: "<string>", the caller's (dataclasses') flags: none (a
            # string given to exec from here would get this module's `annotations` flag)
            code = compile(source, "<string>", "exec", dont_inherit=True)
            if codes is not None:
                codes[source] = code
                if not _NEW:
                    atexit.register(save)
                _NEW.add(str(module))
        source = code
    builtins.exec(source, globals, locals)


def _codes(module: str) -> dict[str, CodeType]:
    codes = _CODE.get(module)
    if codes is None:
        codes = _CODE[module] = _read(cache_path(module))
    return codes


def _read(path: Path) -> dict[str, CodeType]:
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    try:
        loaded = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return {}
    if not (isinstance(loaded, tuple) and len(loaded) == 2 and loaded[0] == _BUILD):
        return {}  # not ours, or another interpreter's
    codes = loaded[1]
    if not isinstance(codes, dict):
        return {}
    return {k: v for k, v in codes.items() if isinstance(k, str) and isinstance(v, CodeType)}


def save() -> None:
    """Write the code compiled for each module if there is new code (an exit handler); never raises."""
    if sys.dont_write_bytecode:
        return
    for module in sorted(_NEW):
        path = cache_path(module)
        merged = {**_read(path), **_CODE[module]}  # what other processes wrote meanwhile, too
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(exist_ok=True)
            temporary.write_bytes(marshal.dumps((_BUILD, merged)))
            os.replace(temporary, path)
        except OSError:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            return
    _NEW.clear()
