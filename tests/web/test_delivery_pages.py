"""The models, environments, reliability and admin pages against the real app.

The registry and the deployment store are filled through their own stores (the same calls the
deploy agent and `aicd model register` make), with a real judge's report; the pages are read
and acted on through the app, as a person with a session."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import UI, csrf_of
from web_seed import EVIL, seed_environment, seed_models

from aicd.store.deployments import open_deploy_store

CI = "build:\n  script: [echo built]\n"


def url_of(ui: UI) -> str:
    return f"sqlite:///{ui.home / 'aicd.db'}"


def test_models_pages_compare_with_production_show_lineage_and_history(ui: UI, tmp_path: Path) -> None:
    ui.project(tmp_path, "demo", CI)
    ui.project(tmp_path, "other", CI)
    pid = ui.run("demo")
    ui.wait("demo", pid)
    job = ui.jobs("demo", pid)["build"]
    sha = ui.api("GET", f"/projects/demo/pipelines/{pid}")["sha"]
    seed_models(url_of(ui), "demo", int(ui.api("GET", "/projects/demo")["id"]), pid, job["id"], sha)
    person = ui.browser(ui.user("dev", "demo", "developer"))

    listing = person.get("/models")
    assert listing.status_code == 200 and 'href="/models/iris"' in listing.text
    page = person.get("/models/iris")
    assert page.status_code == 200
    text = re.sub(r"\s+", " ", page.text)
    # the newest version against the one in production, metric by metric
    assert "Metrics of v2 against v1 (in production)" in text
    assert '<th scope="row">accuracy</th><td>0.95</td><td>0.9</td><td>+0.05</td>' in text
    assert '<th scope="row">f1</th><td>—</td><td>0.8</td><td>—</td>' in text
    assert EVIL not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    # lineage to the pipeline, the job and the commit
    assert (
        f'href="/projects/demo/pipelines/{pid}"' in text and f'href="/projects/demo/jobs/{job["id"]}"' in text
    )
    assert f'<code title="{sha}">{sha[:8]}</code>' in text and ">build</a>" in text
    assert 'class="badge s-success">success</span>' in text  # the pipeline's status
    # aliases and how they moved
    assert "models:/iris@production" in text and "v1 → v2" in text and "v2 → v1" in text
    chosen = person.get("/models/iris?a=1&b=2").text
    assert "Metrics of v1 against v2" in chosen
    assert person.get("/models/iris?a=0").status_code == 404  # not a version number: no such page
    assert person.get("/models/iris?a=9").status_code == 404

    # a member of another project only: the model does not exist for them
    stranger = ui.browser(ui.user("stranger", "other", "viewer"))
    assert "/models/iris" not in stranger.get("/models").text
    hidden = stranger.get("/models/iris")
    assert hidden.status_code == 404 and "no model named &#39;iris&#39;" in hidden.text
    assert "iris" not in stranger.get("/projects/other").text


def test_environment_page_shows_rollout_analysis_and_history_and_acts_by_role(ui: UI, tmp_path: Path) -> None:
    ui.project(tmp_path, "demo", CI)
    seed_environment(url_of(ui), "demo", tmp_path)
    viewer = ui.browser(ui.user("watcher", "demo", "viewer"))
    project = viewer.get("/projects/demo").text
    assert 'href="/projects/demo/environments/production"' in project

    page = viewer.get("/projects/demo/environments/production")
    assert page.status_code == 200
    text = re.sub(r"\s+", " ", page.text)
    assert "<code>r1</code> (stable): <strong>80%</strong>" in text
    assert "<code>r3</code> (canary): <strong>20%</strong>" in text
    # the rollout in progress: its steps and where it is
    assert 'data-status="running"' in text and "Deployment #3" in text
    assert '<li class="step-done">set weight 20%' in text
    assert '<li class="step-current" aria-current="step">pause until promoted' in text
    assert '<li class="step-next">set weight 50%' in text
    # the last judged deployment's analysis: verdicts, effect sizes, the charts
    assert "Deployment #2 (<code>r2</code>): <strong>failed</strong>" in text
    assert '<th scope="row">latency_ms</th><td><span class="verdict v-high">High</span>' in text
    assert text.count('class="bar stable"') == 2 + 3 and text.count('class="bar canary"') == 5
    assert "Medians of stable and canary per metric" in text and "Predicted classes" in text
    # the history with reasons; untrusted text escaped
    assert "rolled_back" in text and "canary failed: &lt;script&gt;" in text
    assert EVIL not in page.text
    assert "<button" not in page.text.split("</header>", 1)[1]  # a viewer: no action
    # while the rollout runs, the page asks for its live part every 2 s: that part alone
    assert 'hx-get="/projects/demo/environments/production?live=1" hx-trigger="every 2s"' in text
    live = viewer.get("/projects/demo/environments/production?live=1").text
    assert live.lstrip().startswith('<section id="env-live"') and "<html" not in live
    assert 'data-revision="r3" data-weight="20"' in live and "Canary analysis" not in live

    csrf = csrf_of(page.text)
    for action in ("promote", "abort", "rollback"):
        refused = viewer.post(f"/projects/demo/environments/production/{action}", data={"csrf": csrf})
        assert refused.status_code == 403 and "this needs the developer role" in refused.text

    developer = ui.browser(ui.user("dev", "demo", "developer"))
    page = developer.get("/projects/demo/environments/production")
    assert 'id="promote"' in page.text and 'id="abort"' in page.text and 'id="rollback"' not in page.text
    # no agent runs here (no real rollout in this test): a clear answer, nothing done
    tried = developer.post(
        "/projects/demo/environments/production/promote", data={"csrf": csrf_of(page.text)}
    )
    assert tried.status_code == 409 and "its agent is not running" in tried.text
    assert "environment.promote" not in [e["action"] for e in ui.api("GET", "/projects/demo/audit")]
    no_csrf = developer.post("/projects/demo/environments/production/abort", data={})
    assert no_csrf.status_code == 403 and "reload the page" in no_csrf.text
    # an older deployment's analysis, and environments that are not there
    assert "Deployment #2" in developer.get("/projects/demo/environments/production?deployment=2").text
    assert developer.get("/projects/demo/environments/staging").status_code == 404
    with open_deploy_store(url_of(ui)) as store:  # GitLab's names may hold slashes
        store.ensure_environment("review/feature-1", scope="demo")
    assert 'href="/projects/demo/environments/review/feature-1"' in developer.get("/projects/demo").text
    review = developer.get("/projects/demo/environments/review/feature-1")
    assert review.status_code == 200 and "<h1>review/feature-1" in review.text
    assert developer.get("/projects/demo/environments/production?deployment=99").status_code == 404


def test_reliability_page_shows_figures_dora_and_incidents(ui: UI, tmp_path: Path) -> None:
    ui.project(tmp_path, "demo", CI)
    ui.project(tmp_path, "other", CI)
    seed_environment(url_of(ui), "demo", tmp_path)
    person = ui.browser(ui.user("dev", "demo", "viewer"))
    page = person.get("/reliability")
    assert page.status_code == 200
    text = re.sub(r"\s+", " ", page.text)
    for figure in ("Availability", "MTTF", "MTTR", "MTBF", "Error budget left"):
        assert f"<dt>{figure}</dt>" in text
    for key in ("Deployment frequency", "Lead time for changes", "Change failure rate", "Time to restore"):
        assert key in text
    assert 'href="/projects/demo/environments/production">demo / production</a>' in text
    # the same figures as the API
    api = ui.api("GET", "/reliability")["environments"][0]["reliability"]
    assert api["failures"] >= 1 and f"<dd>{api['failures']} <small>" in text
    assert text.count('class="incident k-') == 2 and "incident k-down open" in text
    assert EVIL not in page.text and "bad canary &lt;script&gt;" in page.text

    bad = person.get("/reliability?since=yesterday-ish")
    assert bad.status_code == 400 and 'role="alert"' in bad.text and 'value="yesterday-ish"' in bad.text
    assert person.get("/reliability?slo=2").status_code == 400
    stranger = ui.browser(ui.user("stranger", "other", "developer"))
    other = stranger.get("/reliability").text
    assert "production" not in other and "No environment to report on yet" in other


def test_admin_pages_users_tokens_roles_and_audit(ui: UI, tmp_path: Path) -> None:
    ui.project(tmp_path, "demo", CI)
    developer_token = ui.user("dev", "demo", "developer")
    developer = ui.browser(developer_token)
    assert 'href="/admin"' not in developer.get("/").text
    refused = developer.get("/admin")
    assert refused.status_code == 403 and "this needs an admin" in refused.text
    csrf = csrf_of(developer.get("/").text)
    forged = developer.post("/admin/users", data={"csrf": csrf, "name": "mallory", "is_admin": "true"})
    assert forged.status_code == 403
    assert "mallory" not in [u["name"] for u in ui.api("GET", "/users")]

    admin = ui.browser()
    page = admin.get("/admin")
    assert page.status_code == 200 and 'href="/admin"' in page.text and ">dev</a>" in page.text
    assert "demo: developer" in page.text
    bad_name = admin.post("/admin/users", data={"csrf": csrf_of(page.text), "name": EVIL})
    assert bad_name.status_code == 422 and EVIL not in bad_name.text and "a user name is" in bad_name.text
    made = admin.post("/admin/users", data={"csrf": csrf_of(page.text), "name": "erin"})
    assert made.status_code == 303
    user_url = made.headers["location"]
    user_page = admin.get(user_url)
    assert user_page.status_code == 200 and "<h1>erin" in user_page.text

    created = admin.post(
        f"{user_url}/tokens", data={"csrf": csrf_of(user_page.text), "name": "laptop", "days": "30"}
    )
    assert created.status_code == 201
    token = re.search(r'id="new-token">([^<]+)<', created.text)
    assert token, created.text
    assert token.group(1) not in admin.get(user_url).text  # shown once
    erin = ui.browser(token.group(1))  # the token signs in
    assert erin.get("/").status_code == 200

    roled = admin.post(
        f"{user_url}/roles", data={"csrf": csrf_of(user_page.text), "project": "demo", "role": "viewer"}
    )
    assert roled.status_code == 303 and "demo</a>: viewer" in admin.get(user_url).text
    assert "/projects/demo" in erin.get("/").text

    token_id = re.search(r'action="/admin/tokens/(\d+)/revoke"', admin.get(user_url).text)
    assert token_id
    revoked = admin.post(f"/admin/tokens/{token_id.group(1)}/revoke", data={"csrf": csrf_of(user_page.text)})
    assert revoked.status_code == 303
    assert erin.get("/").status_code == 303  # the revoked token's session is over

    audit = admin.get("/admin").text
    for action in ("user.create", "token.create", "member.set", "token.revoke"):
        assert f"<code>{action}</code>" in audit
    only_demo = admin.get("/admin?project=demo").text
    assert "<code>member.set</code>" in only_demo and "<code>user.create</code>" not in only_demo


def test_environment_page_shows_an_experiments_result(ui: UI, tmp_path: Path) -> None:
    from aicd.delivery.experiment_stats import Design, VariantData, decide

    ui.project(tmp_path, "demo", CI)
    design = Design(samples=100)
    result = decide(
        design, [VariantData("a", "r1", n=100, successes=70), VariantData("b", "r2", n=100, successes=95)]
    )
    assert result is not None
    stored = {"id": f"ab-{EVIL}", "variants": {"a": "r1", "b": "r2"}, **result.to_json()}
    with open_deploy_store(url_of(ui)) as store:
        env = store.ensure_environment("ab", scope="demo")
        for _ in range(2):
            store.new_revision(env.id, release_dir=str(tmp_path), spec={}, commit_sha="c" * 40, ref="main")
        one = store.begin_deployment(env.id, revision="r1", strategy="recreate", actor="alice")
        store.set_deployment(one.id, status="succeeded", finished=True)
        two = store.begin_deployment(env.id, revision="r2", strategy="experiment", actor="bob")
        store.set_deployment(
            two.id, status="succeeded", reason=result.reason, analysis={"experiment": stored}, finished=True
        )
    page = ui.browser(ui.user("watcher", "demo", "viewer")).get("/projects/demo/environments/ab")
    assert page.status_code == 200
    text = re.sub(r"\s+", " ", page.text)
    assert "<h2>Experiment</h2>" in text and "<strong>winner</strong>, b." in text
    assert "100 samples per variant planned (accuracy" in text
    assert '<th scope="row">b</th><td><code>r2</code></td><td>100</td>' in text and "two-proportion z" in text
    assert EVIL not in page.text  # the stored id is escaped
