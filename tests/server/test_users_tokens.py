"""Users, API tokens, members and the audit log, through the real server (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import stat
import time
from pathlib import Path

from serverproc import ServerProc, json_of, make_project, make_user

from aicd_testing import aicd, make_repo

CI = "job:\n  script: [echo hello]\n"


def test_bootstrap_admin_token_written_once(server: ServerProc) -> None:
    path = server.home / "admin-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = server.admin_token
    assert token.startswith("aicd_") and len(token) == 45
    with server.client() as admin:
        me = json_of(admin.get("/user"))
        assert (me["name"], me["is_admin"]) == ("admin", True)
    log = server.log()
    assert f"admin token written to {path}" in log
    assert token not in log

    server.restart()
    assert server.admin_token == token  # not replaced: users exist
    assert server.log().count("admin token written to") == 1
    with server.client() as admin:
        assert [u["name"] for u in json_of(admin.get("/users"))] == ["admin"]
        actions = [e["action"] for e in json_of(admin.get("/audit"))]
        assert actions.count("user.bootstrap") == 1


def test_users_and_tokens_lifecycle(server: ServerProc) -> None:
    bob_id, bob_token = make_user(server, "bob")
    with server.client() as admin, server.client(bob_token) as bob:
        assert json_of(bob.get("/user"))["name"] == "bob"
        denied = bob.get("/users")
        assert denied.status_code == 403 and denied.json() == {"error": "this needs an admin"}
        assert bob.post("/users", json={"name": "eve"}).status_code == 403

        # Tokens: a user makes their own; only admins make them for others.
        created = bob.post(f"/users/{bob_id}/tokens", json={"name": "laptop"})
        assert created.status_code == 201, created.text
        second = json_of(created)
        assert set(second) == {"id", "name", "token", "expires_at"} and second["name"] == "laptop"
        assert bob.post("/users/1/tokens", json={"name": "steal"}).status_code == 403
        assert bob.get("/users/1/tokens").status_code == 403

        listed = json_of(bob.get(f"/users/{bob_id}/tokens"))
        assert [t["name"] for t in listed] == ["test", "laptop"]
        text = json.dumps(listed)
        assert bob_token not in text and second["token"] not in text
        assert hashlib.sha256(bob_token.encode()).hexdigest() not in text
        assert all("token" not in t and "token_hash" not in t for t in listed)
        assert all(t["last_used_at"] is None or t["last_used_at"] <= time.time() for t in listed)
        assert listed[0]["last_used_at"] is not None  # bob's first token has been used

        # Both header styles work; anything else is 401.
        assert bob.get("/user", headers={"Authorization": ""}).status_code == 401
        private = server.client("")
        assert private.get("/user", headers={"PRIVATE-TOKEN": second["token"]}).json()["name"] == "bob"
        missing = private.get("/user")
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert "Bearer" in missing.json()["error"]
        assert private.get("/user", headers={"Authorization": "Bearer aicd_nope"}).status_code == 401
        assert private.get("/user", headers={"Authorization": f"Basic {bob_token}"}).status_code == 401

        # Revoke: at once, by the owner; not by another non-admin.
        _, mallory_token = make_user(server, "mallory")
        with server.client(mallory_token) as mallory:
            # Someone else's token and no token at all: the same 404 (ids are not enumerable).
            assert mallory.delete(f"/tokens/{second['id']}").status_code == 404
            assert mallory.delete("/tokens/999998").status_code == 404
        revoked = bob.delete(f"/tokens/{second['id']}")
        assert revoked.status_code == 200 and revoked.json()["revoked"] is True
        gone = private.get("/user", headers={"PRIVATE-TOKEN": second["token"]})
        assert gone.status_code == 401 and second["token"] not in gone.text
        assert admin.delete("/tokens/999999").status_code == 404

        # Users: names are unique; deleting one ends their tokens; the last admin stays.
        taken = admin.post("/users", json={"name": "bob"})
        assert taken.status_code == 409 and taken.json() == {"error": "user 'bob' already exists"}
        assert admin.post("/users", json={"name": "bad name!"}).status_code == 422
        assert admin.delete(f"/users/{bob_id}").status_code == 204
        assert bob.get("/user").status_code == 401
        assert admin.get(f"/users/{bob_id}/tokens").status_code == 404
        assert admin.delete(f"/users/{bob_id}").status_code == 404
        last = admin.delete("/users/1")
        assert last.status_code == 409 and "last admin" in last.json()["error"]
        private.close()


def test_token_expiry(server_sqlite: ServerProc) -> None:
    user_id, _ = make_user(server_sqlite, "temp")
    with server_sqlite.client() as admin:
        # Before its end a token works (an hour: a loaded machine cannot make the first request late)...
        hour = json_of(admin.post(f"/users/{user_id}/tokens", json={"name": "hour", "expires_in_s": 3600}))
        assert 3590 < hour["expires_at"] - time.time() <= 3600
        with server_sqlite.client(hour["token"]) as temp:
            assert temp.get("/user").status_code == 200
        # ...and after it, it does not: whenever the request comes, it is past the token's end.
        created = json_of(admin.post(f"/users/{user_id}/tokens", json={"name": "short", "expires_in_s": 1.5}))
        assert created["expires_at"] > time.time() - 60
        with server_sqlite.client(created["token"]) as temp:
            while time.time() <= created["expires_at"] + 0.1:
                time.sleep(0.1)
            expired = temp.get("/user")
            assert expired.status_code == 401 and "expired" in expired.json()["error"]
        assert admin.post(f"/users/{user_id}/tokens", json={"expires_in_s": 0}).status_code == 422


def test_database_keeps_token_hashes_only(server_sqlite: ServerProc) -> None:
    _, token = make_user(server_sqlite, "hashed")
    with server_sqlite.client(token) as user:
        assert user.get("/user").status_code == 200
    digest = hashlib.sha256(token.encode()).hexdigest().encode()
    files = [p for p in server_sqlite.home.iterdir() if p.name.startswith("aicd.db")]
    content = b"".join(p.read_bytes() for p in files)
    assert digest in content  # the scan sees the tokens table...
    assert token.encode() not in content  # ...which holds no token
    assert server_sqlite.admin_token.encode() not in content


def test_members_and_audit(server: ServerProc, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": CI})
    make_project(server, "proj", str(repo))
    carol_id, carol_token = make_user(server, "carol", ("proj", "developer"))
    with server.client() as admin, server.client(carol_token) as carol:
        members = json_of(admin.get("/projects/proj/members"))
        assert members == [{"user_id": carol_id, "name": "carol", "role": "developer"}]
        assert carol.get("/projects/proj/members").status_code == 403
        assert carol.get("/projects/proj/audit").status_code == 403

        assert admin.put(f"/projects/proj/members/{carol_id}", json={"role": "maintainer"}).status_code == 200
        assert json_of(carol.get("/projects/proj/members"))[0]["role"] == "maintainer"
        assert admin.put(f"/projects/proj/members/{carol_id}", json={"role": "owner"}).status_code == 422
        assert admin.put("/projects/proj/members/9999", json={"role": "viewer"}).status_code == 404
        assert admin.put(f"/projects/nope/members/{carol_id}", json={"role": "viewer"}).status_code == 404

        # A maintainer manages members too.
        dan_id, dan_token = make_user(server, "dan")
        with server.client(dan_token) as dan:
            assert dan.get("/projects/proj/members").status_code == 404  # no role: not revealed
            assert carol.put(f"/projects/proj/members/{dan_id}", json={"role": "viewer"}).status_code == 200
            assert dan.get("/projects/proj/members").status_code == 403
            assert carol.delete(f"/projects/proj/members/{dan_id}").status_code == 204
            assert dan.get("/projects/proj/members").status_code == 404
            assert carol.delete(f"/projects/proj/members/{dan_id}").status_code == 404

        project_log = json_of(carol.get("/projects/proj/audit"))
        assert [(e["actor"], e["action"], e["target"]) for e in project_log[:3]] == [
            ("carol", "member.remove", "dan"),
            ("carol", "member.set", "dan"),
            ("admin", "member.set", "carol"),
        ]
        assert project_log[1]["details"] == {"role": "viewer"}
        assert [e["id"] for e in project_log] == sorted((e["id"] for e in project_log), reverse=True)
        assert carol.get("/audit").status_code == 403

        everything = json_of(admin.get("/audit", params={"limit": 1000}))
        actions = {e["action"] for e in everything}
        assert {"user.bootstrap", "user.create", "token.create", "member.set", "member.remove"} <= actions
        assert carol_token not in json.dumps(everything)
        only_proj = json_of(admin.get("/audit", params={"project": "proj"}))
        assert only_proj and all(e["project_id"] == only_proj[0]["project_id"] for e in only_proj)
        assert json_of(admin.get("/audit", params={"limit": 2})) == everything[:2]
        assert admin.get("/audit", params={"project": "nope"}).status_code == 404


def test_cli_remote_mode(server_sqlite: ServerProc, tmp_path: Path) -> None:
    env = server_sqlite.cli_env()
    added = aicd(tmp_path, "user", "add", "dave", env=env)
    assert added.returncode == 0, added.stderr
    assert "user dave created" in added.stdout
    created = aicd(tmp_path, "token", "create", "dave", "--name", "ci", env=env)
    assert created.returncode == 0, created.stderr
    dave_token = created.stdout.strip()
    assert dave_token.startswith("aicd_") and "shown once" in created.stderr

    users = aicd(tmp_path, "user", "list", "--json", env=env)
    assert [u["name"] for u in json.loads(users.stdout)] == ["admin", "dave"]
    table = aicd(tmp_path, "token", "list", "dave", env=env)
    assert table.returncode == 0 and "ci" in table.stdout and dave_token not in table.stdout
    token_id = json.loads(aicd(tmp_path, "token", "list", "dave", "--json", env=env).stdout)[0]["id"]

    # dave: may make his own token, may not list users.
    dave_env = server_sqlite.cli_env(dave_token)
    own = aicd(tmp_path, "token", "create", "dave", env=dave_env)
    assert own.returncode == 0, own.stderr
    denied = aicd(tmp_path, "user", "list", env=dave_env)
    assert denied.returncode != 0 and denied.stderr.strip() == "aicd: server: this needs an admin"

    revoked = aicd(tmp_path, "token", "revoke", str(token_id), env=env)
    assert revoked.returncode == 0 and f"token {token_id} revoked" in revoked.stdout
    after = aicd(tmp_path, "user", "list", env=dave_env)
    assert after.returncode != 0 and "invalid, expired or revoked token" in after.stderr

    audit = aicd(tmp_path, "audit", "list", env=env)
    assert audit.returncode == 0
    assert "token.revoke" in audit.stdout and "user.create" in audit.stdout
    assert dave_token not in audit.stdout

    removed = aicd(tmp_path, "user", "remove", "dave", env=env)
    assert removed.returncode == 0, removed.stderr
    assert "dave" not in aicd(tmp_path, "user", "list", env=env).stdout


def test_cli_without_a_server(tmp_path: Path) -> None:
    env = {"AICD_SERVER": "http://127.0.0.1:9", "AICD_TOKEN": "x"}
    from aicd_testing import clean_env

    unreachable = aicd(tmp_path, "user", "list", env={**clean_env(), **env})
    assert unreachable.returncode != 0
    assert "cannot reach the aicd server at http://127.0.0.1:9" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
    none = aicd(tmp_path, "audit", "list", env=clean_env())
    assert none.returncode != 0 and "pass --server URL or set AICD_SERVER" in none.stderr
