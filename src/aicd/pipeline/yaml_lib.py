"""PyYAML, imported without compiling the regular expression its pure-Python reader needs.

`import yaml` compiles `yaml.reader.Reader.NON_PRINTABLE`, a class of every non-printable
character up to U+10FFFF: ~57 M instructions (callgrind), a tenth of a small `aicd run` (issue
17), for a reader that libyaml's C loader, the one aicd uses when it is there, never calls. This
module imports yaml with that one pattern compiled on its first use instead (by the pure-Python
loader, when libyaml is missing, or by anything else that reads with yaml's `Reader`): every
other pattern is compiled as usual, and the pattern, once compiled, is the same.

Import yaml from here on the run's path: `from aicd.pipeline.yaml_lib import yaml`.
"""

from __future__ import annotations

import re
import sys
from typing import Any

# yaml/reader.py (PyYAML 5 and 6): if PyYAML changes it, nothing is deferred
NON_PRINTABLE = "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"


class LazyPattern:
    """Stands for `re.compile(pattern, flags)`, compiled when one of its attributes is first used."""

    def __init__(self, pattern: str, flags: int) -> None:
        self.pattern = pattern
        self.flags = flags
        self.compiled: re.Pattern[str] | None = None

    def __getattr__(self, name: str) -> Any:
        if self.compiled is None:
            self.compiled = re.compile(self.pattern, self.flags)
        return getattr(self.compiled, name)


def _import_yaml() -> None:
    if "yaml" in sys.modules:
        return
    compile_now = re.compile

    def compile_later(pattern: Any, flags: Any = 0) -> Any:
        if pattern == NON_PRINTABLE and isinstance(pattern, str):
            return LazyPattern(pattern, int(flags))
        return compile_now(pattern, flags)

    re.compile = compile_later
    try:
        import yaml  # noqa: F401
    finally:
        re.compile = compile_now


_import_yaml()

import yaml  # noqa: E402

__all__ = ["yaml"]
