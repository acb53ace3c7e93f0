"""A job's log as HTML: ANSI colours to spans (by class: the pages allow no inline style),
GitLab's collapsible sections to <details>, numbered lines with anchors.

Job output is untrusted: every character of it is escaped; only the markup made here is HTML.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from markupsafe import Markup, escape

_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")
_OTHER_ESCAPES = re.compile(r"\x1b[()][A-Za-z0-9]|\x1b[=>78]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SECTION = re.compile(
    r"^(?:\x1b\[0K)?section_(start|end):(\d+):([A-Za-z0-9_.-]+)(\[[^\]\r]*\])?\r?(?:\x1b\[0K)?(.*)$"
)

MAX_SECTION_DEPTH = 20


@dataclass
class AnsiState:
    """The SGR attributes in force, carried from one line to the next (as a terminal does)."""

    fg: str | None = None
    bg: str | None = None
    flags: set[str] = field(default_factory=set)

    def classes(self) -> str:
        names = sorted(self.flags)
        if self.fg:
            names.append(f"fg-{self.fg}")
        if self.bg:
            names.append(f"bg-{self.bg}")
        return " ".join(names)

    def apply(self, params: str) -> None:
        codes = [int(p) if p.isdigit() else 0 for p in params.split(";")] if params else [0]
        i = 0
        while i < len(codes):
            code = codes[i]
            if code == 0:
                self.fg, self.bg, self.flags = None, None, set()
            elif code in _FLAGS:
                self.flags.add(_FLAGS[code])
            elif code in _UNFLAGS:
                self.flags.difference_update(_UNFLAGS[code])
            elif 30 <= code <= 37:
                self.fg = str(code - 30)
            elif 90 <= code <= 97:
                self.fg = str(code - 90 + 8)
            elif code == 39:
                self.fg = None
            elif 40 <= code <= 47:
                self.bg = str(code - 40)
            elif 100 <= code <= 107:
                self.bg = str(code - 100 + 8)
            elif code == 49:
                self.bg = None
            elif code in (38, 48) and i + 1 < len(codes):
                # 256 colours: the 16 basic ones get their class, others stay default; RGB is skipped
                if codes[i + 1] == 5 and i + 2 < len(codes):
                    colour = str(codes[i + 2]) if codes[i + 2] < 16 else None
                    if code == 38:
                        self.fg = colour
                    else:
                        self.bg = colour
                    i += 2
                elif codes[i + 1] == 2:
                    i += 4
            i += 1


_FLAGS = {1: "bold", 2: "dim", 3: "italic", 4: "underline", 9: "strike"}
_UNFLAGS = {22: {"bold", "dim"}, 23: {"italic"}, 24: {"underline"}, 29: {"strike"}}


def visible(line: str) -> str:
    """What a terminal would show of a line with carriage returns: the text after the last one."""
    line = line.rstrip("\r")
    return line.rsplit("\r", 1)[-1] if "\r" in line else line


def line_html(line: str, state: AnsiState) -> Markup:
    """One line of output as escaped text in spans; updates `state`."""
    line = _OTHER_ESCAPES.sub("", visible(line))
    out: list[str] = []
    position = 0

    def text(chunk: str) -> None:
        chunk = _CONTROL.sub("", chunk)
        if not chunk:
            return
        classes = state.classes()
        escaped = str(escape(chunk))
        out.append(f'<span class="{classes}">{escaped}</span>' if classes else escaped)

    for match in _CSI.finditer(line):
        text(line[position : match.start()])
        if match.group(2) == "m":
            state.apply(match.group(1))
        position = match.end()
    text(line[position:])
    return Markup("".join(out))


@dataclass(frozen=True)
class SectionMark:
    kind: str  # "start" or "end"
    name: str
    collapsed: bool
    header: str


def section_mark(line: str) -> SectionMark | None:
    """GitLab's `section_start:<time>:<name>[collapsed=true]\\r\\e[0K<header>` or `section_end:...`."""
    match = _SECTION.match(line)
    if match is None:
        return None
    kind, _, name, options, header = match.groups()
    collapsed = bool(options) and "collapsed=true" in options.replace(" ", "")
    return SectionMark(kind, name, collapsed, header)


def numbered_line(number: int, body: Markup, extra_class: str = "") -> Markup:
    classes = f"line {extra_class}".strip()
    return Markup(
        f'<div class="{classes}" id="L{number}"><a class="ln" href="#L{number}" aria-label="line {number}">'
        f'{number}</a><span class="lt">{body}</span></div>'
    )


class LiveLines:
    """Lines as they arrive (the live log): each one numbered; a section's start is a header line."""

    def __init__(self, first_number: int = 1) -> None:
        self.number = first_number - 1
        self.state = AnsiState()

    def render(self, line: str) -> Markup:
        self.number += 1
        mark = section_mark(line)
        if mark is not None:
            if mark.kind == "end":
                return numbered_line(self.number, Markup(""), "section-end")
            return numbered_line(self.number, line_html(mark.header, self.state), "section-head")
        return numbered_line(self.number, line_html(line, self.state))


def render_log(lines: Iterable[str], first_number: int = 1) -> Markup:
    """A whole log: numbered lines, sections as <details> (open unless `collapsed=true`)."""
    return Markup("".join(_render(lines, first_number)))


def _render(lines: Iterable[str], first_number: int) -> Iterator[str]:
    state = AnsiState()
    open_sections: list[str] = []
    for number, line in enumerate(lines, start=first_number):
        mark = section_mark(line)
        if mark is not None and mark.kind == "start" and len(open_sections) < MAX_SECTION_DEPTH:
            open_attr = "" if mark.collapsed else " open"
            yield f'<details class="section"{open_attr}><summary>'
            yield numbered_line(number, line_html(mark.header, state), "section-head")
            yield "</summary>"
            open_sections.append(mark.name)
        elif mark is not None and mark.kind == "end" and mark.name in open_sections:
            while open_sections:  # closes sections left open inside it too
                if open_sections.pop() == mark.name:
                    break
                yield "</details>"
            yield numbered_line(number, Markup(""), "section-end")
            yield "</details>"
        elif mark is not None:
            yield numbered_line(number, Markup(""), "section-end")
        else:
            yield numbered_line(number, line_html(line, state))
    yield "</details>" * len(open_sections)


def split_lines(text: str) -> list[str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines
