"""aicd.pipeline.yaml_lib: PyYAML imported with its reader's big pattern compiled on first use."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from aicd.pipeline.yaml_lib import NON_PRINTABLE, LazyPattern, yaml

PROBE = """
import re, sys
from aicd.pipeline.yaml_lib import yaml
assert "yaml" in sys.modules and re.compile.__module__ == "re"  # re.compile given back
pattern = yaml.reader.Reader.NON_PRINTABLE
print(type(pattern).__name__)
try:
    yaml.load("a: \\x07", Loader=yaml.SafeLoader)  # the pure-Python reader
except yaml.reader.ReaderError as exc:
    print("rejected", hex(exc.character))
print(yaml.load("a: [1, yes, 0o7]", Loader=yaml.SafeLoader))
"""


def test_the_reader_pattern_waits_for_its_first_use_and_still_works() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # LazyPattern: the pattern is still PyYAML's (else this module defers nothing: update it)
    assert proc.stdout.split("\n")[:3] == ["LazyPattern", "rejected 0x7", "{'a': [1, True, '0o7']}"]


@pytest.mark.parametrize("text", ["plain", "tab\there", "bell\x07", "\ufffe", "\U0001f600 ok", "\x85\x9f"])
def test_a_lazy_pattern_finds_what_the_compiled_one_finds(text: str) -> None:
    lazy = LazyPattern(NON_PRINTABLE, 0)
    compiled = re.compile(NON_PRINTABLE)
    got, want = lazy.search(text), compiled.search(text)
    assert (got and got.span()) == (want and want.span())
    assert lazy.pattern == compiled.pattern


def test_yaml_is_the_module() -> None:
    assert yaml is sys.modules["yaml"]
