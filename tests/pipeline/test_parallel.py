"""parallel: N and parallel:matrix -> job instances named as GitLab names them; needs selection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aicd.errors import PipelineError
from aicd.pipeline import load_pipeline
from aicd.pipeline.nodes import LocList, LocMap, Mark
from aicd.pipeline.parallel import (
    Instance,
    ParallelSpec,
    instances,
    matrix_name,
    read_parallel,
    select,
    substitute,
)
from aicd.pipeline.schema import At, Problems


def _read(value: Any) -> tuple[ParallelSpec | None, list[str]]:
    problems = Problems()
    spec = read_parallel(value, At(Mark("f.yml", 3, 5), "parallel", 'job "j"', "jobs.j"), problems)
    return spec, [str(d) for d in problems]


def test_parallel_count_names_and_node_index() -> None:
    spec, errors = _read(3)
    assert errors == []
    got = instances("rspec", spec)
    assert [i.name for i in got] == ["rspec 1/3", "rspec 2/3", "rspec 3/3"]
    assert [(i.node_index, i.node_total) for i in got] == [(1, 3), (2, 3), (3, 3)]


def test_parallel_one_is_allowed() -> None:
    spec, errors = _read(1)
    assert errors == [] and [i.name for i in instances("x", spec)] == ["x 1/1"]


def test_no_parallel_is_one_plain_instance() -> None:
    assert instances("x", None) == [Instance("x")]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (0, "from 1 to 200, got 0"),
        (201, "from 1 to 200, got 201"),
        ("3", "got a string"),
        (True, "got a boolean"),
        ({"matrix": "A"}, "must be a list of mappings"),
        ({"matrix": []}, "must not be empty"),
        ({"matrix": [{"A": []}]}, "at least one value"),
        ({"matrix": [{}]}, "at least one variable"),
        ({"matrix": [{"A": [{"x": 1}]}]}, "must be a string or a number"),
        ({"matrx": [{"A": 1}]}, 'did you mean "matrix"'),
        ({"matrix": [{"A": list(range(15)), "B": list(range(15))}]}, "at most 200"),
        ({"matrix": [{"A": "$[[ matrix.B ]]"}]}, "only in needs:parallel:matrix"),
    ],
)
def test_bad_parallel_is_located_and_named(value: Any, fragment: str) -> None:
    spec, errors = _read(value)
    assert spec is None
    assert errors, "expected an error"
    assert errors[0].startswith("f.yml:3:5: ")
    assert any(fragment in e for e in errors), errors


def test_matrix_is_cartesian_per_entry_in_key_order() -> None:
    matrix = LocList(
        [
            LocMap({"PROVIDER": "aws", "STACK": ["monitoring", "app1"]}),
            LocMap({"PROVIDER": ["gcp", "vultr"], "STACK": ["data"]}),
        ]
    )
    spec, errors = _read(LocMap({"matrix": matrix}))
    assert errors == []
    got = instances("deploystacks", spec)
    assert [i.name for i in got] == [
        "deploystacks: [aws, monitoring]",
        "deploystacks: [aws, app1]",
        "deploystacks: [gcp, data]",
        "deploystacks: [vultr, data]",
    ]
    assert got[0].matrix == (("PROVIDER", "aws"), ("STACK", "monitoring"))
    assert [(i.node_index, i.node_total) for i in got] == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_matrix_numbers_and_booleans_become_strings() -> None:
    spec, errors = _read({"matrix": [{"PY": [3.11, 3], "FAST": True}]})
    assert errors == []
    assert [i.name for i in instances("t", spec)] == ["t: [3.11, true]", "t: [3, true]"]


def test_matrix_name_keeps_long_values_whole() -> None:
    value = "a,b,c " * 20
    assert matrix_name("j", (("A", value),)) == f"j: [{value}]"


def test_select_matches_full_and_partial_selectors() -> None:
    insts = instances(
        "b",
        ParallelSpec(
            matrix=(
                (("ARCH", "x64"), ("OS", "linux")),
                (("ARCH", "x64"), ("OS", "mac")),
                (("ARCH", "arm"), ("OS", "linux")),
            )
        ),
    )
    assert [i.name for i in select(insts, [(("ARCH", "x64"),)])] == ["b: [x64, linux]", "b: [x64, mac]"]
    assert [i.name for i in select(insts, [(("ARCH", "arm"), ("OS", "linux"))])] == ["b: [arm, linux]"]
    assert select(insts, [(("ARCH", "sparc"),)]) == []


@pytest.mark.parametrize(
    ("text", "own", "expected", "missing"),
    [
        ("$[[ matrix.OS ]]", {"OS": "linux"}, "linux", []),
        ("$[[matrix.OS]]", {"OS": "linux"}, "linux", []),
        ("b-$[[ matrix.A ]]-$[[ matrix.B ]]", {"A": "1", "B": "2"}, "b-1-2", []),
        ("$[[ matrix.MY-VAR ]]", {"MY-VAR": "x"}, "x", []),
        ("$VAR stays", {}, "$VAR stays", []),
        ("$[[ matrix.NOPE ]]", {"OS": "linux"}, "$[[ matrix.NOPE ]]", ["NOPE"]),
    ],
)
def test_matrix_expressions(text: str, own: dict[str, str], expected: str, missing: list[str]) -> None:
    assert substitute(text, own) == (expected, missing)


# -- end to end, through the loader -----------------------------------------------------------


def _load(tmp_path: Path, text: str) -> Any:
    (tmp_path / ".gitlab-ci.yml").write_text(text)
    return load_pipeline(tmp_path)


def _errors(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / ".gitlab-ci.yml").write_text(text)
    with pytest.raises(PipelineError) as info:
        load_pipeline(tmp_path)
    return [str(d) for d in info.value.diagnostics]


def test_parallel_jobs_in_pipeline_with_variables(tmp_path: Path) -> None:
    pipeline = _load(
        tmp_path,
        """
build:
  stage: build
  parallel:
    matrix:
      - NAME: [foo, bar]
      - NAME: beb
  variables:
    OTHER: x
  script: echo $NAME
test:
  parallel: 2
  needs: [build]
  script: echo
""",
    )
    names = [j.name for j in pipeline.jobs]
    assert names == ["build: [foo]", "build: [bar]", "build: [beb]", "test 1/2", "test 2/2"]
    foo = pipeline.job("build: [foo]")
    assert foo.base_name == "build"
    assert [(v.key, v.value) for v in foo.variables] == [("OTHER", "x"), ("NAME", "foo")]
    assert foo.matrix == (("NAME", "foo"),)
    assert (foo.node_index, foo.node_total) == (1, 3)
    test2 = pipeline.job("test 2/2")
    assert [n.job for n in test2.needs or ()] == ["build: [foo]", "build: [bar]", "build: [beb]"]


def test_needs_parallel_matrix_selects_instances(tmp_path: Path) -> None:
    pipeline = _load(
        tmp_path,
        """
stages: [build, test]
build:
  stage: build
  parallel:
    matrix:
      - PROVIDER: [aws, gcp]
        STACK: [monitoring, app1]
  script: echo
one:
  stage: test
  needs:
    - job: build
      parallel:
        matrix:
          - PROVIDER: aws
            STACK: app1
  script: echo
per-instance:
  stage: test
  parallel:
    matrix:
      - PROVIDER: [aws, gcp]
  needs:
    - job: build
      artifacts: false
      parallel:
        matrix:
          - PROVIDER: $[[ matrix.PROVIDER ]]
  script: echo
""",
    )
    assert [n.job for n in pipeline.job("one").needs or ()] == ["build: [aws, app1]"]
    gcp = pipeline.job("per-instance: [gcp]")
    assert [(n.job, n.artifacts) for n in gcp.needs or ()] == [
        ("build: [gcp, monitoring]", False),
        ("build: [gcp, app1]", False),
    ]


@pytest.mark.parametrize(
    ("needs", "fragment"),
    [
        (
            "{job: plain, parallel: {matrix: [{A: x}]}}",
            'needs "plain" with parallel:matrix, but "plain" has no',
        ),
        ("{job: build, parallel: {matrix: [{A: nope}]}}", "no instance matches needs:parallel:matrix"),
        ("{job: build, parallel: {matrix: [{B: x}]}}", '"B" is not one of its parallel:matrix variables'),
        (
            "{job: build, parallel: {matrix: [{A: '$[[ matrix.NOPE ]]'}]}}",
            "$[[ matrix.NOPE ]] is not a matrix variable of this job",
        ),
    ],
)
def test_bad_matrix_needs(tmp_path: Path, needs: str, fragment: str) -> None:
    errors = _errors(
        tmp_path,
        f"""
plain:
  stage: build
  script: echo
build:
  stage: build
  parallel:
    matrix:
      - A: [x, y]
  script: echo
use:
  needs: [{needs}]
  script: echo
""",
    )
    assert any(fragment in e for e in errors), errors
    assert all(e.startswith(".gitlab-ci.yml:") for e in errors)


def test_optional_matrix_need_with_no_match_is_dropped(tmp_path: Path) -> None:
    pipeline = _load(
        tmp_path,
        """
build:
  stage: build
  parallel:
    matrix:
      - A: [x]
  script: echo
use:
  needs:
    - job: build
      optional: true
      parallel:
        matrix:
          - A: nope
  script: echo
""",
    )
    assert pipeline.job("use").needs == ()
