from __future__ import annotations

import subprocess
from pathlib import Path

from aicd.executors.script import MAX_LINE_BYTES, LineReader, display_command, new_token, render_script


def collect(
    token: str = "TOKEN:", labels: list[str | None] | None = None
) -> tuple[LineReader, list[tuple[str, str]]]:
    lines: list[tuple[str, str]] = []
    reader = LineReader(lambda k, t: lines.append((k, t)), token, labels or [])
    return reader, lines


def test_display_command() -> None:
    assert display_command("echo hi") == "echo hi"
    assert display_command("  echo hi  \n") == "echo hi"
    assert display_command("a\nb\n") == "a # collapsed multi-line command"
    assert display_command("   \n") is None


def test_partial_lines_across_chunks() -> None:
    reader, lines = collect()
    for chunk in [b"hel", b"lo\nwor", b"ld\n", b"tail"]:
        reader.feed(chunk)
    assert lines == [("out", "hello"), ("out", "world")]
    reader.close()
    assert lines[-1] == ("out", "tail")


def test_carriage_returns() -> None:
    reader, lines = collect()
    reader.feed(b"crlf line\r\nprogress 10%\rprogress 50%\rprogress 100%\r\n\r\n")
    assert lines == [("out", "crlf line"), ("out", "progress 100%"), ("out", "")]


def test_gitlab_section_markers_keep_their_carriage_return() -> None:
    reader, lines = collect()
    reader.feed(b"\x1b[0Ksection_start:1700000000:deps[collapsed=true]\r\x1b[0KInstalling\n")
    reader.feed(b"section_end:1700000001:deps\r\x1b[0K\nnot_a_section:1:x\rshown\n")
    assert lines == [
        ("out", "\x1b[0Ksection_start:1700000000:deps[collapsed=true]\r\x1b[0KInstalling"),
        ("out", "section_end:1700000001:deps\r\x1b[0K"),
        ("out", "shown"),
    ]


def test_invalid_and_split_utf8() -> None:
    reader, lines = collect()
    data = "é€".encode()
    reader.feed(b"bad \xff byte\n" + data[:1])
    reader.feed(data[1:] + b"\n")
    assert lines == [("out", "bad \ufffd byte"), ("out", "é€")]


def test_very_long_line_is_cut() -> None:
    reader, lines = collect()
    reader.feed(b"x" * (MAX_LINE_BYTES * 2 + 10) + b"\n")
    assert [len(t) for _, t in lines] == [MAX_LINE_BYTES, MAX_LINE_BYTES, 10]


def test_markers_become_commands_even_after_a_partial_line() -> None:
    reader, lines = collect("TOK:", ["echo a", None, "exit 1"])
    reader.feed(b"TOK:0\nout\npartialTOK:2\nTOK:99\n")
    assert lines == [
        ("cmd", "echo a"),
        ("out", "out"),
        ("out", "partial"),
        ("cmd", "exit 1"),
        ("out", "TOK:99"),
    ]


def test_rendered_script_runs_like_gitlab(tmp_path: Path) -> None:
    token = new_token()
    commands = ["echo one", "", "x=$((1+1))\necho $x", "false", "echo never"]
    script = tmp_path / "s.sh"
    script.write_text(render_script(commands, token))
    proc = subprocess.run(["bash", "--noprofile", "--norc", str(script)], capture_output=True)
    assert proc.returncode == 1
    labels = [display_command(c) for c in commands]
    reader, lines = collect(token, labels)
    reader.feed(proc.stdout)
    reader.close()
    assert lines == [
        ("cmd", "echo one"),
        ("out", "one"),
        ("cmd", "x=$((1+1)) # collapsed multi-line command"),
        ("out", "2"),
        ("cmd", "false"),
    ]


def test_pipefail_is_on(tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text(render_script(["false | true", "echo never"], new_token()))
    proc = subprocess.run(["bash", "--noprofile", "--norc", str(script)], capture_output=True)
    assert proc.returncode == 1
    assert b"never" not in proc.stdout
