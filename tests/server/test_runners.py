"""Runners through the real server (SQLite and PostgreSQL) and the real CLI: register, check in,
list with status, pause, resume, delete; tokens kept by hash only, admins only."""

from __future__ import annotations

import hashlib
import json

from serverproc import ServerProc, json_of, make_user

from aicd_testing import aicd


def test_runner_lifecycle(server: ServerProc) -> None:
    _bob_id, bob_token = make_user(server, "bob")
    with server.client() as admin, server.client(bob_token) as bob, server.client("") as anonymous:
        denied = bob.post("/runners", json={"tags": ["gpu"]})
        assert denied.status_code == 403 and denied.json() == {"error": "this needs an admin"}
        assert bob.get("/runners").status_code == 403

        created = admin.post("/runners", json={"tags": "gpu, cuda", "description": "the GPU box"})
        assert created.status_code == 201, created.text
        runner = json_of(created)
        token = runner["token"]
        assert token.startswith("aicdrt_") and len(token) == 47
        assert runner["tags"] == ["cuda", "gpu"] and runner["run_untagged"] is False
        assert runner["status"] == "never_contacted" and runner["paused"] is False

        listed = admin.get("/runners")
        text = listed.text
        assert token not in text and hashlib.sha256(token.encode()).hexdigest() not in text
        assert [r["id"] for r in json_of(listed)] == [runner["id"]]

        # A worker checks in with its runner token only: online, version and host recorded.
        checked = anonymous.post(
            "/runners/verify",
            headers={"RUNNER-TOKEN": token},
            json={"version": "0.9.0", "host": "gpu-1\x1b[2J"},
        )
        assert checked.status_code == 200, checked.text
        seen = json_of(checked)
        assert seen["id"] == runner["id"] and seen["status"] == "online"
        assert "aicd.jobs.tags.gpu" in seen["queues"] and "aicd.jobs.untagged" not in seen["queues"]
        one = json_of(admin.get(f"/runners/{runner['id']}"))
        assert (one["status"], one["version"], one["host"]) == ("online", "0.9.0", "gpu-1[2J")

        # An API token is no runner token, and an unknown runner token is refused.
        for bad in (server.admin_token, "aicdrt_" + "x" * 40):
            refused = anonymous.post("/runners/verify", headers={"RUNNER-TOKEN": bad})
            assert refused.status_code == 401 and refused.json()["error"].startswith(
                ("not a runner", "unknown")
            )
            assert bad not in refused.text

        paused = json_of(admin.post(f"/runners/{runner['id']}/pause"))
        assert paused["paused"] is True
        assert json_of(admin.post(f"/runners/{runner['id']}/resume"))["paused"] is False

        assert admin.delete(f"/runners/{runner['id']}").status_code == 204
        gone = anonymous.post("/runners/verify", headers={"RUNNER-TOKEN": token})
        assert gone.status_code == 401
        missing = admin.get(f"/runners/{runner['id']}")
        assert missing.status_code == 404 and missing.json() == {"error": f"no runner {runner['id']}"}

        actions = [e["action"] for e in json_of(admin.get("/audit"))]
        for action in ("runner.register", "runner.pause", "runner.resume", "runner.delete"):
            assert action in actions
        assert token not in admin.get("/audit").text


def test_bad_runner_input_gets_one_clear_error(server_sqlite: ServerProc) -> None:
    with server_sqlite.client() as admin:
        bad_tag = admin.post("/runners", json={"tags": ["gpu", "rm -rf"]})
        assert bad_tag.status_code == 422
        assert bad_tag.json() == {
            "error": "runner tag 'rm -rf': a tag is letters, digits and _ . : + - "
            "(starting with a letter or digit, at most 64 characters)"
        }
        untagged = admin.post("/runners", json={})
        assert untagged.status_code == 422 and "--run-untagged" in untagged.json()["error"]
        control = admin.post("/runners", json={"tags": ["a"], "description": "x\u202ey"})
        assert control.status_code == 422 and "control characters" in control.json()["error"]
        assert admin.get("/runners").json() == []


def test_runner_cli(server_sqlite: ServerProc) -> None:
    server = server_sqlite
    env = server.cli_env()
    registered = aicd(server.home, "runner", "register", "--tags", "gpu,cuda", "--run-untagged", env=env)
    assert registered.returncode == 0, registered.stderr
    token = registered.stdout.strip()
    assert token.startswith("aicdrt_") and "registered (cuda, gpu; untagged jobs too)" in registered.stderr

    listed = aicd(server.home, "runner", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "never_contacted" in listed.stdout and "cuda,gpu (+untagged)" in listed.stdout
    assert token not in listed.stdout

    as_json = json.loads(aicd(server.home, "runner", "list", "--json", env=env).stdout)
    runner_id = as_json[0]["id"]
    for verb, said in (("pause", "paused"), ("resume", "resumed")):
        done = aicd(server.home, "runner", verb, str(runner_id), env=env)
        assert done.returncode == 0 and done.stdout.strip() == f"runner {runner_id} {said}", done.stderr
    bad = aicd(server.home, "runner", "register", "--tags", "a b", env=env)
    assert bad.returncode != 0 and "runner tag 'a b'" in bad.stderr and "Traceback" not in bad.stderr
    deleted = aicd(server.home, "runner", "delete", str(runner_id), env=env)
    assert deleted.returncode == 0, deleted.stderr
    again = aicd(server.home, "runner", "delete", str(runner_id), env=env)
    assert again.returncode != 0 and f"no runner {runner_id}" in again.stderr

    _bob_id, bob_token = make_user(server, "bob")
    refused = aicd(server.home, "runner", "list", env=server.cli_env(bob_token))
    assert refused.returncode != 0 and "admin" in refused.stderr
