"""The model registry on the real `aicd server` (SQLite and PostgreSQL): `aicd model --server`
end to end, the /models, /objects and /lineage routes, who may write, and bad uploads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from serverproc import ServerProc, has_route, make_project, make_user

from aicd_testing import aicd, git, make_repo


def _project(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "proj", {"README": "x\n"})
    (repo / "model").mkdir()
    (repo / "model" / "weights.bin").write_bytes(bytes(range(256)) * 40)
    (repo / "model" / "info.json").write_text('{"variant": "standard"}\n')
    (repo / "model.bin").write_bytes(b"single file model")
    (repo / "metrics.json").write_text('{"accuracy": 0.97, "log_loss": 0.2}\n')
    return repo


def _cli(server: ServerProc, repo: Path, *args: str, token: str | None = None) -> Any:
    proc = aicd(repo, "model", *args, env=server.cli_env(token))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout) if "--json" in args else proc.stdout


def test_the_cli_in_remote_mode_and_the_api_share_one_registry(server: ServerProc, tmp_path: Path) -> None:
    repo = _project(tmp_path)
    head = git(repo, "rev-parse", "HEAD")
    v1 = _cli(
        server, repo, "register", "iris", "model", "--metrics", "metrics.json", "--alias", "staging", "--json"
    )
    assert (v1["uri"], v1["artifact"]["kind"], v1["aliases"]) == ("models:/iris/1", "dir", ["staging"])
    assert v1["lineage"]["commit"] == head and v1["lineage"]["created_by"] == "admin"
    v2 = _cli(server, repo, "register", "iris", "model.bin", "--tag", "k=v", "--json")
    assert v2["version"] == 2 and v2["artifact"]["size"] == len(b"single file model")
    digest = v1["artifact"]["digest"].removeprefix("sha256:")
    assert (server.home / "objects" / "sha256" / digest[:2] / digest[2:]).is_file()

    with server.client() as api:
        assert [(m["name"], m["latest_version"], m["aliases"]) for m in api.get("/models").json()] == [
            ("iris", 2, {"staging": 1})
        ]
        assert api.get("/models/iris").json()["latest_version"] == 2
        assert [v["version"] for v in api.get("/models/iris/versions").json()] == [2, 1]
        assert api.get("/models/iris/versions/latest").json()["tags"] == {"k": "v"}
        assert api.get("/models/iris/aliases/staging").json()["metrics"] == {
            "accuracy": 0.97,
            "log_loss": 0.2,
        }
        moved = api.put("/models/iris/aliases/production", json={"version": 1})
        assert moved.status_code == 200 and moved.json()["previous"] is None
        artifact = api.get("/models/iris/versions/2/artifact")
        assert artifact.content == b"single file model"
        assert (
            artifact.headers["x-aicd-digest"] == "sha256:" + hashlib.sha256(b"single file model").hexdigest()
        )
        by_commit = api.get(f"/lineage/commits/{head[:7]}").json()
        assert [v["uri"] for v in by_commit] == ["models:/iris/2", "models:/iris/1"]

    shown = _cli(server, repo, "show", "models:/iris@production", "--json")
    assert shown["version"] == 1 and shown["aliases"] == ["production", "staging"]
    assert "moved: version 1 -> 2" in _cli(server, repo, "alias", "iris", "production", "2")
    _cli(server, repo, "download", "models:/iris@staging", "-o", "out")
    for rel in ("weights.bin", "info.json"):
        assert (repo / "out" / "model" / rel).read_bytes() == (repo / "model" / rel).read_bytes()
    history = _cli(server, repo, "history", "iris", "--json")
    assert [(e["alias"], e["previous"], e["version"], e["actor"]) for e in history] == [
        ("production", 1, 2, "admin"),
        ("production", None, 1, "admin"),
        ("staging", None, 1, "admin"),
    ]
    assert _cli(server, repo, "lineage", "--commit", head, "--json")[0]["version"] == 2
    _cli(server, repo, "alias", "iris", "staging", "--delete")

    with server.client() as api:
        actions = [
            (e["action"], e["target"]) for e in api.get("/audit").json() if e["action"].startswith("model.")
        ]
        assert ("model.register", "models:/iris/1") in actions
        assert ("model.alias.set", "models:/iris@production") in actions
        assert ("model.alias.delete", "models:/iris@staging") in actions
        document = api.get("/openapi.json").json()
    for method, path in [
        ("get", "/models/{name}/versions/{version}/artifact"),
        ("post", "/models/{name}/versions"),
        ("put", "/models/{name}/aliases/{alias}"),
        ("delete", "/models/{name}/aliases/{alias}"),
        ("put", "/objects/{digest}"),
        ("get", "/lineage/commits/{sha}"),
    ]:
        assert method in document["paths"][f"/api/v1{path}"], path


def _upload(api: Any, data: bytes) -> Any:
    return api.put(f"/objects/sha256:{hashlib.sha256(data).hexdigest()}", content=data)


def _version_body(data: bytes, **more: Any) -> dict[str, Any]:
    return {"artifact": {"digest": "sha256:" + hashlib.sha256(data).hexdigest(), "name": "m.bin"}, **more}


def test_reading_needs_a_token_and_writing_a_developer_role(
    server_sqlite: ServerProc, tmp_path: Path
) -> None:
    server = server_sqlite
    make_project(server, "shop", str(make_repo(tmp_path / "shop", {"README": "x\n"})), poll_interval_s=None)
    _, viewer = make_user(server, "vera", ("shop", "viewer"))
    _, nobody = make_user(server, "nora")
    _, developer = make_user(server, "dev", ("shop", "developer"))
    data = b"a model"
    with server.client(developer) as api:
        assert _upload(api, data).status_code == 201
        assert _upload(api, data).status_code == 200  # already there
        created = api.post("/models/iris/versions", json=_version_body(data, lineage={"pipeline_id": 5}))
        assert created.status_code == 201, created.text
        assert (
            created.json()["lineage"]["created_by"] == "dev" and created.json()["lineage"]["pipeline_id"] == 5
        )
    # the model belongs to "shop" (the developer's only project): its viewer reads, writes nothing
    with server.client(viewer) as api:
        assert api.get("/models/iris/versions/1").status_code == 200
        assert api.get("/models/iris").json()["project"] == "shop"
        for response in (
            _upload(api, b"other"),
            api.post("/models/iris/versions", json=_version_body(data)),
            api.put("/models/iris/aliases/production", json={"version": 1}),
            api.delete("/models/iris/aliases/production"),
        ):
            assert response.status_code == 403, response.text
            assert "developer role" in response.json()["error"]
    # a user with no role on "shop" does not see its model at all
    with server.client(nobody) as api:
        assert api.get("/models").json() == []
        assert _upload(api, b"other").status_code == 403
        for response in (
            api.get("/models/iris/versions/1"),
            api.post("/models/iris/versions", json=_version_body(data)),
            api.put("/models/iris/aliases/production", json={"version": 1}),
            api.delete("/models/iris/aliases/production"),
        ):
            assert response.status_code == 404, response.text
            assert response.json()["error"] == "no model named 'iris'"
    with server.client("") as api:
        assert api.get("/models").status_code == 401
        assert _upload(api, data).status_code == 401
    with server.client() as api:
        assert [v["version"] for v in api.get("/models/iris/versions").json()] == [1]
        assert api.get("/models/iris/aliases").json() == []


def test_bad_requests_are_clear_errors_and_change_nothing(server_sqlite: ServerProc) -> None:
    server = server_sqlite
    data = b"model bytes"
    with server.client() as api:
        wrong = api.put("/objects/sha256:" + "0" * 64, content=data)
        assert wrong.status_code == 422 and "the upload was damaged" in wrong.json()["error"]
        assert api.put("/objects/md5:abc", content=data).status_code == 422
        missing = api.post("/models/iris/versions", json=_version_body(data))
        assert missing.status_code == 422 and "upload it first" in missing.json()["error"]
        assert not any(p.is_file() for p in (server.home / "objects").rglob("*"))
        assert _upload(api, data).status_code == 201
        for body, message in [
            (_version_body(data, metrics={"accuracy": "high"}), "not a number"),
            (_version_body(data, alias="latest"), "cannot be an alias"),
            (_version_body(data, tags={"k": 1}), "must be text"),
            (_version_body(data, dataset_hash="no spaces please"), "data set hash"),
            (
                {"artifact": {"digest": "sha256:" + hashlib.sha256(data).hexdigest(), "name": "../x"}},
                "artifact name",
            ),
        ]:
            response = api.post("/models/iris/versions", json=body)
            assert response.status_code == 422, response.text
            assert message in response.json()["error"], response.text
        bad_name = api.post("/models/bad%20name/versions", json=_version_body(data))
        assert bad_name.status_code == 422 and "not a valid model name" in bad_name.json()["error"]
        assert api.get("/models").json() == []
        unknown = api.get("/models/iris/versions/1")
        assert unknown.status_code == 404 and "no model named 'iris'" in unknown.json()["error"]
        assert api.post("/models/iris/versions", json=_version_body(data)).status_code == 201
        assert (
            api.get("/models/iris/versions/2").json()["error"]
            == "model 'iris' has no version 2 (it has version 1)"
        )
        assert api.get("/models/iris/versions/abc").status_code == 422
        assert api.put("/models/iris/aliases/production", json={"version": 0}).status_code == 422
        assert api.get("/models/iris/aliases/production").status_code == 404
        assert api.get("/lineage/commits/xyz").status_code == 422
    assert has_route(server, "get", "/models/{name}/history")
