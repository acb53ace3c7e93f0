"""The log renderer (ANSI, sections, escaping) and the graph layout, on their own."""

from __future__ import annotations

from aicd.pipeline.ir import Job, Need, Pipeline
from aicd.store.records import JobRecord
from aicd.web import ansi, graph


def test_text_is_escaped_and_colours_become_classes() -> None:
    state = ansi.AnsiState()
    assert ansi.line_html('<script>alert("x")</script> & co', state) == (
        "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; co"
    )
    assert ansi.line_html("\x1b[1;31mred\x1b[0m plain", state) == '<span class="bold fg-1">red</span> plain'
    # attributes carry to the next line until a reset, as in a terminal
    assert ansi.line_html("\x1b[32mgreen", state) == '<span class="fg-2">green</span>'
    assert ansi.line_html("still", state) == '<span class="fg-2">still</span>'
    assert ansi.line_html("\x1b[mnow plain \x1b[38;5;9mbright\x1b[38;5;200m dflt", state) == (
        'now plain <span class="fg-9">bright</span> dflt'
    )
    assert ansi.line_html("\x1b[48;2;1;2;3mrgb\x1b[49m", ansi.AnsiState()) == "rgb"
    # cursor moves, erase codes, OSC titles and control characters leave nothing behind
    assert ansi.line_html("a\x1b[2Kb\x1b]0;title\x07c\x00\x08d", ansi.AnsiState()) == "abcd"
    assert ansi.line_html("10%\r50%\r100%", ansi.AnsiState()) == "100%"
    # an escape that tries to carry markup is still text
    assert "<img" not in ansi.line_html("\x1b[31m<img src=x onerror=alert(1)>", ansi.AnsiState())


def test_sections_fold_into_details_with_numbered_lines() -> None:
    lines = [
        "before",
        "\x1b[0Ksection_start:1700000000:deps[collapsed=true]\r\x1b[0KInstalling <deps>",
        "pip install",
        "section_start:1700000001:inner\rInner",
        "deep",
        "\x1b[0Ksection_end:1700000002:deps\r\x1b[0K",  # closes inner too
        "section_end:1:never_started\r",
        "after",
        "section_start:1:open_at_end\rTail",
        "last",
    ]
    html = str(ansi.render_log(lines))
    assert html.count("<details") == html.count("</details>") == 3
    assert '<details class="section"><summary>' in html  # collapsed
    assert '<details class="section" open><summary>' in html
    assert "Installing &lt;deps&gt;" in html and "section_start" not in html and "\r" not in html
    for number in range(1, len(lines) + 1):
        assert f'id="L{number}"><a class="ln" href="#L{number}"' in html
    assert html.index("pip install") < html.index("</details>") < html.index("after")


def test_live_lines_number_on_from_a_resumed_offset() -> None:
    live = ansi.LiveLines(first_number=7)
    first = str(live.render("\x1b[33mwarn"))
    assert 'id="L7"' in first and '<span class="fg-3">warn</span>' in first
    head = str(live.render("section_start:1:x[collapsed=true]Header"))  # the SSE stream drops the \r
    assert 'id="L8"' in head and "section-head" in head and "Header" in head and "section_start" not in head
    assert "\n" not in first + head


def _job(job_id: int, name: str, stage: str, status: str = "success") -> JobRecord:
    return JobRecord(job_id, 1, name, stage, status, "on_success", False, 1, False, 0, None, 1.0, 2.0, None)


def test_graph_columns_by_stage_order_and_edges_for_needs() -> None:
    ir = Pipeline(
        stages=("build", "test", "deploy"),
        jobs=(
            Job(name="compile", base_name="compile", stage="build"),
            Job(name="lint", base_name="lint", stage="build", needs=(Need("compile"),)),
            Job(name="unit " + "x" * 40, base_name="unit", stage="test", needs=(Need("compile"),)),
            Job(name="ship", base_name="ship", stage="deploy"),
        ),
    )
    jobs = [
        _job(4, "ship", "deploy", "manual"),
        _job(1, "compile", "build"),
        _job(2, "lint", "build", "failed"),
        _job(3, "unit " + "x" * 40, "test", "running"),
    ]
    drawn = graph.layout(jobs, ir)
    assert [c.stage for c in drawn.columns] == ["build", "test", "deploy"]
    x = {n.job.name: n.x for n in drawn.nodes}
    assert x["compile"] == x["lint"] < x["unit " + "x" * 40] < x["ship"]
    assert [(e.source, e.target) for e in drawn.edges] == [
        ("compile", "lint"),
        ("compile", "unit " + "x" * 40),
    ]
    assert all(e.path.startswith("M") for e in drawn.edges)
    label = next(n.label for n in drawn.nodes if n.job.name.startswith("unit"))
    assert len(label) == graph.LABEL_CHARS and label.endswith("…")
    assert drawn.width >= 3 * graph.NODE_W and drawn.height > 2 * graph.NODE_H
    # without the saved IR (a pipeline file that did not load): columns from the jobs, no edges
    plain = graph.layout(jobs[1:3], None)
    assert [c.stage for c in plain.columns] == ["build"] and plain.edges == ()
    assert graph.layout([], None).nodes == ()
