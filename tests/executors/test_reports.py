from __future__ import annotations

from aicd.executors.reports import CoverageScanner, parse_dotenv, parse_junit, parse_metrics


def test_dotenv_rules() -> None:
    text = (
        "# a comment\n"
        "\n"
        "PLAIN=value\n"
        "  SPACED  =  spaced value  \n"
        'DQ="double quoted"\n'
        "SQ='single'\n"
        "REF=$PLAIN\n"
        "EQ=a=b\n"
        "EMPTY=\n"
        "bad-key=x\n"
        "no equals sign\n"
        "PLAIN=second\n"
    )
    found, warnings = parse_dotenv(text, "build.env")
    assert [(v.key, v.value) for v in found] == [
        ("PLAIN", "value"),
        ("SPACED", "spaced value"),
        ("DQ", "double quoted"),
        ("SQ", "single"),
        ("REF", "$PLAIN"),
        ("EQ", "a=b"),
        ("EMPTY", ""),
        ("PLAIN", "second"),
    ]
    assert all(not v.expand for v in found)  # no substitution: values are literal
    assert [w.split(":")[2] for w in warnings] == ["10", "11"]
    assert all(w.startswith("WARNING: build.env:") for w in warnings)


def test_dotenv_over_5_kib_warns_but_is_read() -> None:
    found, warnings = parse_dotenv("A=" + "x" * 6000)
    assert len(found) == 1
    assert "5 KiB" in warnings[0]


def test_junit_sums_files_and_survives_bad_xml() -> None:
    one = b"""<?xml version="1.0"?>
    <testsuites><testsuite name="a">
      <testcase name="ok"/><testcase name="f"><failure>boom</failure></testcase>
    </testsuite><testsuite name="b"><testcase name="s"><skipped/></testcase></testsuite></testsuites>"""
    two = b'<testsuite><testcase name="e"><error/></testcase><testcase name="ok2"></testcase></testsuite>'
    summary, warnings = parse_junit([("one.xml", one), ("two.xml", two), ("bad.xml", b"<testsuite><oops")])
    assert summary is not None
    assert (summary.total, summary.passed, summary.failed, summary.errors, summary.skipped) == (5, 2, 1, 1, 1)
    assert len(warnings) == 1 and "bad.xml" in warnings[0]


def test_junit_only_bad_files_gives_none() -> None:
    summary, warnings = parse_junit([("x.xml", b"not xml")])
    assert summary is None
    assert warnings


def test_junit_with_namespace() -> None:
    data = b'<t:testsuite xmlns:t="urn:x"><t:testcase name="a"><t:failure/></t:testcase></t:testsuite>'
    summary, _ = parse_junit([("ns.xml", data)])
    assert summary is not None and (summary.total, summary.failed) == (1, 1)


def test_metrics() -> None:
    text = (
        "# HELP accuracy model accuracy\n"
        "# TYPE accuracy gauge\n"
        "accuracy 0.93\n"
        'latency_seconds{quantile="0.99"} 0.120 1700000000\n'
        "f1_score 8.5e-1\n"
        "broken\n"
        "bad_value abc\n"
        "# EOF\n"
    )
    metrics, warnings = parse_metrics(text, "metrics.txt")
    assert metrics == {"accuracy": 0.93, 'latency_seconds{quantile="0.99"}': 0.12, "f1_score": 0.85}
    assert len(warnings) == 2 and all("metrics.txt" in w for w in warnings)


def test_coverage_last_matching_line_wins() -> None:
    scan = CoverageScanner(r"/^\s*Lines:\s*(\d+.\d+)\%/")
    for line in ["  Lines:   48.46% (510/650)", "noise", "  Lines:   78.46% (510/650)", "more noise"]:
        scan.feed(line)
    assert scan.value == 78.46


def test_coverage_without_group_takes_first_number_of_the_match() -> None:
    scan = CoverageScanner(r"/All files.*?\|.*?\|.*?([\d\.]+)/")
    scan.feed("All files            |    99.3 |    97.91 |     100 |")
    assert scan.value == 97.91  # the group after the second "|"
    scan2 = CoverageScanner(r"/TOTAL.*? (100(?:\.0+)?\%|[1-9]?\d(?:\.\d+)?\%)$/")
    scan2.feed("TOTAL                        18      0   100%")
    assert scan2.value == 100.0
    scan3 = CoverageScanner("/Coverage \\d+/")
    scan3.feed("Coverage 42 of 100")
    assert scan3.value == 42


def test_coverage_bad_regex_is_a_warning() -> None:
    scan = CoverageScanner("/(unclosed/")
    scan.feed("(unclosed 5")
    assert scan.value is None
    assert scan.error is not None and "not valid" in scan.error
