"""Project variables through the real server: masked values never come back; values are encrypted at rest."""

from __future__ import annotations

import json
from pathlib import Path

from serverproc import ServerProc, json_of, make_user
from sqlalchemy import create_engine, text

from aicd_testing import make_repo

CI = "job:\n  script: [echo hello]\n"
MASKED = "masked-Value-8f3a9c"
PLAIN = "plain-value-1b2c"


def _raw_rows(server: ServerProc) -> str:
    """Every row of the tables that could hold a value, as the database has them."""
    engine = create_engine(server.database_url)
    try:
        with engine.connect() as conn:
            rows = [
                *conn.execute(text("SELECT * FROM project_variables")),
                *conn.execute(text("SELECT * FROM audit_log")),
                *conn.execute(text("SELECT * FROM projects")),
            ]
    finally:
        engine.dispose()
    return "\n".join(repr(tuple(row)) for row in rows)


def test_variables(server: ServerProc, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": CI})
    with server.client() as admin:
        assert admin.post("/projects", json={"name": "demo", "repo_url": str(repo)}).status_code == 201
        put = admin.put("/projects/demo/variables/API_TOKEN", json={"value": MASKED, "masked": True})
        assert put.status_code == 200, put.text
        assert json_of(put) == {
            "key": "API_TOKEN",
            "value": None,
            "masked": True,
            "protected": False,
            "file": False,
            "updated_at": put.json()["updated_at"],
        }
        assert MASKED not in put.text
        body = {"value": PLAIN, "protected": True, "file": True}
        assert json_of(admin.put("/projects/demo/variables/CONFIG", json=body))["value"] == PLAIN

        listed = admin.get("/projects/demo/variables")
        assert MASKED not in listed.text
        assert [(v["key"], v["value"], v["protected"], v["file"]) for v in json_of(listed)] == [
            ("API_TOKEN", None, False, False),
            ("CONFIG", PLAIN, True, True),
        ]

        # Replacing a variable keeps one row; unmasking it shows the new value.
        json_of(admin.put("/projects/demo/variables/CONFIG", json={"value": "v2"}))
        assert {v["key"]: v["value"] for v in json_of(admin.get("/projects/demo/variables"))}[
            "CONFIG"
        ] == "v2"

        short = admin.put("/projects/demo/variables/PIN", json={"value": "1234", "masked": True})
        assert short.status_code == 422 and "at least 8 characters" in short.json()["error"]
        assert "1234" not in short.json()["error"]
        assert admin.put("/projects/demo/variables/1BAD", json={"value": "x"}).status_code == 422
        assert admin.delete("/projects/demo/variables/NOPE").status_code == 404
        assert admin.put("/projects/nope/variables/X", json={"value": "x"}).status_code == 404

        audit = json.dumps(json_of(admin.get("/projects/demo/audit")))
        assert "variable.set" in audit and MASKED not in audit and PLAIN not in audit

    # Encrypted at rest: the database never holds a value in the clear.
    raw = _raw_rows(server)
    assert "API_TOKEN" in raw and MASKED not in raw and PLAIN not in raw
    if server.database_url.startswith("sqlite:///"):
        db_file = Path(server.database_url.removeprefix("sqlite:///"))
        for path in db_file.parent.glob(db_file.name + "*"):  # the file, its WAL and shm
            data = path.read_bytes()
            assert MASKED.encode() not in data and PLAIN.encode() not in data
    assert MASKED not in server.log()

    # Roles: maintainers manage variables; developers may not even read them.
    _, dev = make_user(server, "dev", ("demo", "developer"))
    _, lead = make_user(server, "lead", ("demo", "maintainer"))
    with server.client(dev) as client:
        assert client.get("/projects/demo/variables").status_code == 403
        assert client.put("/projects/demo/variables/X", json={"value": "x"}).status_code == 403
    with server.client(lead) as client:
        assert MASKED not in client.get("/projects/demo/variables").text
        assert client.delete("/projects/demo/variables/API_TOKEN").status_code == 204
        assert [v["key"] for v in json_of(client.get("/projects/demo/variables"))] == ["CONFIG"]
