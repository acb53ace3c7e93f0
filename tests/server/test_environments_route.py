"""/projects/{project}/environments, /deployments and /deployment-events read the deployment store
of the project's scope (its name), on the real `aicd server` (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from serverproc import ServerProc, make_project, make_user

from aicd.store.db import connect
from aicd.store.deployments import DeployStore
from aicd_testing import make_repo


def test_a_projects_environments_deployments_and_events(server: ServerProc, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {".gitlab-ci.yml": "build:\n  script: [echo built]\n"})
    for name in ("alpha", "beta"):
        make_project(server, name, str(repo))
    with DeployStore(connect(server.database_url), owns_database=True) as store:
        prod = store.ensure_environment("production", scope="alpha", tier="production")
        store.update_environment(prod.id, status="healthy", url="http://127.0.0.1:9", stable_revision="r1",
                                 weights={"r1": 100})  # fmt: skip
        store.new_revision(prod.id, release_dir="/tmp/r1", spec={"command": "x"}, commit_sha="a" * 40)
        sha = "a" * 40
        dep = store.begin_deployment(prod.id, revision="r1", strategy="canary", actor="ci", commit_sha=sha,
                                     commit_at=1000.0, pipeline_id=7, job_id=12)  # fmt: skip
        store.set_deployment(dep.id, status="succeeded", finished=True, analysis={"score": 100})
        store.add_event(prod.id, "deployment.succeeded", "r1 serves", deployment_id=dep.id, revision="r1")
        store.ensure_environment("production", scope="beta")  # another project's: not listed
    _, viewer = make_user(server, "vera", ("alpha", "viewer"))
    with server.client(viewer) as view:
        [env] = view.get("/projects/alpha/environments").json()
        assert (env["name"], env["tier"], env["status"], env["stable_revision"], env["weights"]) == (
            "production", "production", "healthy", "r1", {"r1": 100}
        )  # fmt: skip
        [deployment] = view.get("/projects/alpha/deployments", params={"environment": "production"}).json()
        assert deployment["number"] == 1 and deployment["status"] == "succeeded"
        got = (deployment["sha"], deployment["commit_at"], deployment["pipeline_id"], deployment["job_id"])
        assert got == ("a" * 40, 1000.0, "7", "12")
        assert deployment["created_at"] == dep.started_at and deployment["analysis"] == {"score": 100}
        # the server's monitor may add its own events about the (unreachable) address meanwhile
        events = view.get("/projects/alpha/deployment-events").json()
        [event] = [e for e in events if e["kind"].startswith("deployment.")]
        assert (event["kind"], event["deployment_id"]) == ("deployment.succeeded", dep.id)
        assert view.get("/projects/beta/environments").status_code == 404  # no role on beta
