"""`aicd model` through real `aicd` processes: register, list, show, alias, download, lineage,
history; lineage from CI_* variables; bad input; and concurrent registration by several processes
on SQLite and on the real PostgreSQL (versions without gaps or duplicates)."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from aicd_testing import AICD, aicd, clean_env, git, make_repo

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "proj", {"README": "x\n"})
    (repo / "model").mkdir()
    (repo / "model" / "weights.bin").write_bytes(b"\x00\x01" * 1000)
    (repo / "model" / "info.json").write_text('{"variant": "standard"}\n')
    (repo / "metrics.json").write_text('{"accuracy": 0.97, "log_loss": 0.2}\n')
    return repo


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this module (dropped after it); unreachable: the tests fail."""
    admin_url = make_url(os.environ.get("AICD_TEST_POSTGRES_URL") or PG_ADMIN).set(
        drivername="postgresql+psycopg"
    )
    name = f"aicd_models_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except SQLAlchemyError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL not reachable at {admin_url.host}: {exc}", pytrace=False)
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def test_register_list_show_alias_download_history(project: Path) -> None:
    v1 = _json(
        aicd(
            project, "model", "register", "iris", "model", "--metrics", "metrics.json", "--tag", "fw=sklearn",
            "--dataset", "model/info.json", "--description", "iris classifier", "--json",
        )
    )  # fmt: skip
    head = git(project, "rev-parse", "HEAD")
    assert (v1["uri"], v1["version"], v1["artifact"]["name"], v1["artifact"]["kind"]) == (
        "models:/iris/1", 1, "model/", "dir",
    )  # fmt: skip
    assert v1["metrics"] == {"accuracy": 0.97, "log_loss": 0.2} and v1["tags"] == {"fw": "sklearn"}
    assert v1["lineage"]["commit"] == head and v1["lineage"]["ref"] == "main"
    assert v1["lineage"]["dataset_hash"].startswith("sha256:")
    proc = aicd(project, "model", "register", "iris", "metrics.json", "--alias", "staging")
    assert proc.returncode == 0, proc.stderr
    size = (project / "metrics.json").stat().st_size
    assert f"registered models:/iris/2 (metrics.json, {size} B, sha256:" in proc.stdout
    assert f"from commit {head[:8]}" in proc.stdout and "alias staging -> version 2" in proc.stdout

    models = _json(aicd(project, "model", "list", "--json"))
    assert models == [
        {
            "name": "iris",
            "description": "iris classifier",
            "latest_version": 2,
            "aliases": {"staging": 2},
            "created_at": models[0]["created_at"],
        }
    ]
    versions = _json(aicd(project, "model", "list", "iris", "--json"))
    assert [v["version"] for v in versions] == [2, 1]
    table = aicd(project, "model", "list", "iris")
    assert table.returncode == 0 and "versions of iris" in table.stdout and head[:8] in table.stdout

    proc = aicd(project, "model", "alias", "iris", "production", "1")
    assert proc.stdout.strip() == "models:/iris@production -> version 1 (new alias)"
    proc = aicd(project, "model", "alias", "iris", "production", "2")
    assert proc.stdout.strip() == "models:/iris@production moved: version 1 -> 2"
    assert _json(aicd(project, "model", "show", "models:/iris@production", "--json"))["version"] == 2
    assert _json(aicd(project, "model", "show", "iris", "production", "--json"))["version"] == 2
    assert _json(aicd(project, "model", "show", "iris", "1", "--json"))["aliases"] == []
    shown = aicd(project, "model", "show", "iris")
    assert shown.returncode == 0 and "models:/iris/2 [production, staging]" in shown.stdout
    shown = aicd(project, "model", "show", "models:/iris/1")
    assert "accuracy" in shown.stdout and "0.97" in shown.stdout and head in shown.stdout

    downloaded = _json(aicd(project, "model", "download", "models:/iris/1", "-o", "out", "--json"))
    assert downloaded["path"] == str(project / "out" / "model")
    assert (project / "out" / "model" / "weights.bin").read_bytes() == b"\x00\x01" * 1000
    again = aicd(project, "model", "download", "models:/iris/1", "-o", "out")
    assert again.returncode == 1 and "exists already" in again.stderr
    assert aicd(project, "model", "download", "iris", "1", "-o", "out", "--force").returncode == 0

    removed = aicd(project, "model", "alias", "iris", "staging", "--delete")
    assert removed.stdout.strip() == "removed models:/iris@staging (it pointed at version 2)"
    history = _json(aicd(project, "model", "history", "iris", "production", "--json"))
    assert [(e["previous"], e["version"]) for e in history] == [(1, 2), (None, 1)]


def test_lineage_inside_a_job_comes_from_ci_variables(project: Path) -> None:
    env = clean_env()
    env.update(
        CI_COMMIT_SHA="c0ffee" + "0" * 34,
        CI_COMMIT_REF_NAME="feature-x",
        CI_PIPELINE_ID="41",
        CI_JOB_ID="42",
        CI_PROJECT_PATH="team/iris",
        CI_PIPELINE_URL="https://ci.example.com/team/iris/-/pipelines/41",
        GITLAB_USER_LOGIN="ann",
    )
    v = _json(aicd(project, "model", "register", "iris", "model", "--json", env=env))
    assert v["lineage"] == {
        "commit": "c0ffee" + "0" * 34,
        "ref": "feature-x",
        "pipeline_id": 41,
        "job_id": 42,
        "project": "team/iris",
        "pipeline_url": "https://ci.example.com/team/iris/-/pipelines/41",
        "dataset_hash": None,
        "created_by": "ann",
    }
    found = _json(aicd(project, "model", "lineage", "--commit", "c0ffee", "--json"))
    assert [x["uri"] for x in found] == ["models:/iris/1"]
    assert _json(aicd(project, "model", "lineage", "--commit", "beef", "--json")) == []
    text = aicd(project, "model", "lineage", "models:/iris/1")
    assert re.search(r"^  pipeline +41$", text.stdout, re.M) and re.search(r"^  job +42$", text.stdout, re.M)


def test_bad_input_is_one_clear_message_and_changes_nothing(project: Path) -> None:
    (project / "bad.json").write_text('{"accuracy": [1, 2]}')
    (project / "junk.txt").write_text("this is not metrics\n")
    cases: list[tuple[list[str], int, str]] = [  # (the core API's tests cover every check)
        (["register", "iris", "model", "--metrics", "bad.json"], 2, 'metric "accuracy" is a list'),
        (["register", "iris", "model", "--metrics", "junk.txt"], 2, "junk.txt"),
        (["register", "iris", "nothing-here"], 2, "no such model file or folder"),
        (["register", "bad name", "model"], 2, "not a valid model name"),
        (["show", "models:/iris@production"], 1, "no model named 'iris'; models: none yet"),
        (["alias", "iris", "production"], 2, "which version?"),
    ]
    for args, code, message in cases:
        proc = aicd(project, "model", *args)
        assert proc.returncode == code, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert _json(aicd(project, "model", "list", "--json")) == []
    assert not (project / ".aicd" / "objects").exists()

    _json(aicd(project, "model", "register", "iris", "model", "--json"))
    for args, code, message in [
        (
            ["show", "models:/iris@production"],
            1,
            "model 'iris' has no alias 'production'; its aliases: none yet",
        ),
        (["show", "models:/irsi/1"], 1, "no model named 'irsi' (did you mean \"iris\"?)"),
        (["alias", "iris", "production", "3"], 1, "model 'iris' has no version 3 (it has version 1)"),
    ]:
        proc = aicd(project, "model", *args)
        assert proc.returncode == code and message in proc.stderr, (args, proc.stderr)
    assert [v["version"] for v in _json(aicd(project, "model", "list", "iris", "--json"))] == [1]
    assert _json(aicd(project, "model", "list", "--json"))[0]["aliases"] == {}


@pytest.mark.parametrize(("backend", "each"), [("sqlite", 5), ("postgresql", 3)])
def test_concurrent_processes_number_versions_without_gaps(
    backend: str, each: int, project: Path, request: pytest.FixtureRequest
) -> None:
    """8 shells at once, each running `aicd model register` 5 (3) times, on a database none of them
    has created yet: versions 1..40 (1..24), each once. (tests/store has 8 x 5 on both, in-process.)"""
    env = clean_env()
    env["AICD_HOME"] = str(project / "home")
    if backend == "postgresql":
        env["AICD_DATABASE_URL"] = request.getfixturevalue("pg_url")
        model_name = f"iris{secrets.token_hex(3)}"
    else:
        model_name = "iris"
    command = " ".join([*AICD, "model", "register", model_name, "model", "--json"])
    script = f"for i in $(seq {each}); do {command} || exit 1; done"
    procs = [
        subprocess.Popen(
            ["bash", "-c", script],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    numbers: list[int] = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        numbers += [json.loads(line)["version"] for line in out.splitlines()]
    assert sorted(numbers) == list(range(1, 8 * each + 1))
    listed = _json(aicd(project, "model", "list", model_name, "--json", env=env))
    assert sorted(v["version"] for v in listed) == list(range(1, 8 * each + 1))
