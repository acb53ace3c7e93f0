"""The IR round-trips through JSON and rejects what does not fit."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from aicd.pipeline.ir import Artifacts, Environment, Job, Need, Pipeline, Reports, Retry, Variable


def _pipeline() -> Pipeline:
    job = Job(
        name="test: [linux, 3.11]",
        base_name="test",
        stage="test",
        script=("echo hi", "make test"),
        variables=(Variable("A", "1"), Variable("B", "$A", expand=False, masked=True)),
        when="manual",
        allow_failure=True,
        allow_failure_exit_codes=(3, 4),
        needs=(Need("build", artifacts=False, optional=True),),
        retry=Retry(max=2, when=("script_failure",), exit_codes=(137,)),
        timeout_s=90.0,
        node_index=1,
        node_total=4,
        matrix=(("OS", "linux"), ("PY", "3.11")),
        artifacts=Artifacts(paths=("dist/",), reports=Reports(junit=("r.xml",))),
        environment=Environment(name="review/$CI_COMMIT_REF_SLUG", url=None, action="start"),
    )
    return Pipeline(jobs=(job, Job(name="build", base_name="build", stage="build")), warnings=("w",))


def test_round_trip_is_identity() -> None:
    p = _pipeline()
    assert Pipeline.from_json(p.to_json()) == p


def test_frozen() -> None:
    p = _pipeline()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.jobs[0].name = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["jobs"][0].update(when="sometimes"), "jobs[0].when"),
        (lambda d: d["jobs"][0].update(timeout_s="10"), "jobs[0].timeout_s"),
        (lambda d: d["jobs"][0].update(bogus=1), "unknown field(s) bogus"),
        (lambda d: d["jobs"][0]["needs"][0].update(optional="yes"), "needs[0].optional"),
        (lambda d: d["jobs"][0].update(node_index=True), "jobs[0].node_index"),
        (lambda d: d["jobs"][0].update(matrix=[["OS"]]), "jobs[0].matrix[0]"),
        (lambda d: d.update(stages="build"), "stages"),
    ],
)
def test_bad_json_names_the_field(mutate: object, message: str) -> None:
    data = json.loads(_pipeline().to_json())
    mutate(data)  # type: ignore[operator]
    with pytest.raises(ValueError, match=re.escape(message)):
        Pipeline.from_json(json.dumps(data))


def test_not_json() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        Pipeline.from_json("{")
