"""User strings on the terminal: control characters escaped, rich markup neutralised.

A job name, stage, ref, commit message, variable or error message comes from a pipeline file, a
Git repository or a server: it may hold ANSI escape sequences (which would recolour, move the
cursor, retitle or clear the user's terminal), other control characters, or bidirectional
overrides (which reorder what is shown). :func:`clean` shows each of them as a visible escape
(``\\x1b``, ``\\u202e``). rich reads ``[...]`` as markup (``test: [python:3.11]`` would print as
``test:``): :func:`markup` also escapes that, for text put into a markup string, and :func:`text`
makes a rich Text (never read as markup) for tables.

A job's own output is not cleaned here: it is the job's, shown as GitLab shows it (colours kept).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.text import Text

# C0 controls but tab and newline, DEL, C1 controls, the bidirectional marks and overrides, and
# lone surrogates (a terminal's encoder would fail on them)
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_CONTROL_OR_BREAK = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]"
)


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(value: object) -> str:
    """``value`` as one line of text safe for a terminal: every control character (newline
    and tab too) and bidirectional override shown as an escape."""
    return _CONTROL_OR_BREAK.sub(_visible, str(value))


def clean_lines(value: object) -> str:
    """As :func:`clean`, but newlines and tabs are kept (messages of several lines)."""
    return _CONTROL.sub(_visible, str(value))


def markup(value: object) -> str:
    """:func:`clean` text, with rich markup escaped: to put inside a rich markup string."""
    from rich.markup import escape

    return escape(clean(value))


def text(value: object, style: str = "") -> Text:
    """A rich Text of :func:`clean` ``value`` (a table cell: never read as markup)."""
    from rich.text import Text

    return Text(clean(value), style=style)
