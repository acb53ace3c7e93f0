"""What the Dispatcher keeps per project (resource groups across pipelines, the cache folder) and
what a pipeline is told about its trigger (GITLAB_USER_*, CI_COMMIT_BEFORE_SHA, URLs). In-process,
real git repositories and real jobs."""

from __future__ import annotations

import itertools
from pathlib import Path

from aicd.store.projects_repo import ProjectRecord
from aicd.triggers.mirror import sync_mirror
from aicd_testing import git, make_repo

from .dispatcher_support import SPAN_SCRIPT, Harness

ZERO = "0" * 40


def _spans(folder: Path, prefix: str) -> list[tuple[float, float]]:
    out = []
    for start in sorted(folder.glob(f"{prefix}*.start")):
        end = start.with_suffix(".end")
        out.append((float(start.read_text()), float(end.read_text())))
    return sorted(out)


DEPLOY_CI = f"""
deploy:
  resource_group: production
  script:
    - '{SPAN_SCRIPT}'
"""


def _second_project(h: Harness, tmp_path: Path, files: dict[str, str]) -> ProjectRecord:
    repo = make_repo(tmp_path / "remote-other", files)
    project = h.state.projects.create("other", str(repo), "main", ".gitlab-ci.yml", None, None)
    sync_mirror(h.home, project)
    return project


def test_a_resource_group_holds_across_the_pipelines_of_a_project(harness: Harness, tmp_path: Path) -> None:
    h = harness
    sha = h.commit({".gitlab-ci.yml": DEPLOY_CI})
    other = _second_project(h, tmp_path, {".gitlab-ci.yml": DEPLOY_CI})
    other_sha = git(Path(other.repo_url), "rev-parse", "HEAD")

    async def body() -> list[int]:
        # two pipelines of the same commit (the newer does not auto-cancel the older) and one
        # pipeline of another project, whose group of the same name is its own
        first = await h.submit(sha)
        second = await h.submit(sha)
        third = await h.state.dispatcher.submit(other, ref="main", sha=other_sha, source="push", actor="t")
        for record in (first, second, third):
            done = await h.finish(record.id)
            assert done.status == "success", done.error
        return [first.id, second.id, third.id]

    first, second, third = h.run(body)
    spans = {n: h.span(h.jobs(n)["deploy"]) for n in (first, second, third)}
    ordered = sorted([spans[first], spans[second]])
    for (_, end), (start, _) in itertools.pairwise(ordered):
        assert start >= end, f"the deploys of one project overlapped: {ordered}"
    # the other project's job did not wait for project demo's group
    assert spans[third][0] < max(spans[first][1], spans[second][1])


CACHE_CI = """
job:
  cache:
    key: shared
    paths: [cached.txt]
  script:
    - 'if [ -f cached.txt ]; then echo "found: $(cat cached.txt)"; else echo "no cache here"; fi'
    - echo "$CI_PROJECT_NAME" > cached.txt
"""


def test_each_project_has_its_own_cache(harness_sqlite: Harness, tmp_path: Path) -> None:
    h = harness_sqlite
    sha = h.commit({".gitlab-ci.yml": CACHE_CI})
    other = _second_project(h, tmp_path, {".gitlab-ci.yml": CACHE_CI})
    other_sha = git(Path(other.repo_url), "rev-parse", "HEAD")

    async def body() -> None:
        first = await h.submit(sha)
        assert (await h.finish(first.id)).status == "success"
        assert "no cache here" in h.log(h.jobs(first.id)["job"])
        # the same key in another project: not demo's cache
        elsewhere = await h.state.dispatcher.submit(
            other, ref="main", sha=other_sha, source="push", actor="t"
        )
        assert (await h.finish(elsewhere.id)).status == "success"
        assert "no cache here" in h.log(h.jobs(elsewhere.id)["job"])
        # demo's next pipeline finds demo's cache
        again = await h.submit(sha)
        assert (await h.finish(again.id)).status == "success"
        assert "found: demo" in h.log(h.jobs(again.id)["job"])

    h.run(body)
    assert (h.home / "cache" / str(h.project.id) / "shared" / "cached.txt").read_text() == "demo\n"
    assert (h.home / "cache" / str(other.id) / "shared" / "cached.txt").read_text() == "other\n"
    assert not (h.home / "cache" / "shared").exists()


TRIGGER_CI = """
job:
  script:
    - echo "login=$GITLAB_USER_LOGIN name=$GITLAB_USER_NAME before=$CI_COMMIT_BEFORE_SHA"
    - echo "server=$CI_SERVER_URL api=$CI_API_V4_URL"
    - echo "project=$CI_PROJECT_URL pipeline=$CI_PIPELINE_URL job=$CI_JOB_URL"
"""


def test_the_trigger_and_the_urls_reach_the_job(harness_sqlite: Harness) -> None:
    h = harness_sqlite
    first = h.commit({".gitlab-ci.yml": TRIGGER_CI}, "first")
    sha = h.commit({"more.txt": "x"}, "second")
    server = "http://127.0.0.1:8080"  # the harness's settings (aicd server puts its bound port there)

    async def body() -> None:
        push = await h.state.dispatcher.submit(
            h.project,
            ref="main",
            sha=sha,
            source="push",
            actor="webhook:gitlab",
            before_sha=first,
            user_login="alice",
            user_name="Alice Liddell",
        )
        polled = await h.state.dispatcher.submit(
            h.project, ref="main", sha=sha, source="push", actor="poller"
        )
        for record in (push, polled):
            assert (await h.finish(record.id)).status == "success"
        job = h.jobs(push.id)["job"]
        log = h.log(job)
        assert f"login=alice name=Alice Liddell before={first}" in log
        assert f"server={server} api={server}/api/v1" in log
        project = f"{server}/api/v1/projects/demo"
        assert f"project={project} pipeline={project}/pipelines/{push.id} job={project}/jobs/{job.id}" in log
        # not said who: the commit's author (the harness commits as "t"); not a push: zeros
        assert f"login=t name=t before={ZERO}" in h.log(h.jobs(polled.id)["job"])

    h.run(body)


def test_a_pipeline_prepared_again_after_a_crash_keeps_its_trigger(harness_sqlite: Harness) -> None:
    from aicd.core import server_pipeline as prep

    h = harness_sqlite
    before = h.commit({".gitlab-ci.yml": TRIGGER_CI}, "first")
    sha = h.commit({"more.txt": "x"}, "second")
    # what a server killed right after `submit` recorded a webhook's pipeline leaves
    record = h.state.runs.create_pipeline(
        project_dir=h.project.key,
        ref="main",
        sha=sha,
        source="push",
        file=".gitlab-ci.yml",
        run_dir_root=str(h.home / "runs"),
    )
    prep.save_trigger(Path(record.run_dir), prep.Trigger(before, "bob", "Bob B"))

    async def body() -> None:
        assert (await h.finish(record.id)).status == "success"
        assert f"login=bob name=Bob B before={before}" in h.log(h.jobs(record.id)["job"])

    h.run(body)
