"""The pages against the real app with real pipelines: what they show, who may act, escaping."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import UI, csrf_of

CI = r"""
stages: [build, test, deploy]
build:
  stage: build
  script:
    - printf '\033[32mgreen ok\033[0m <script>alert(1)</script>\n'
    - printf '\033[0Ksection_start:1:setup[collapsed=true]\r\033[0KInstalling things\n'
    - echo inside-the-section
    - printf '\033[0Ksection_end:1:setup\r\033[0K\n'
    - echo "secret is $TOKEN"
    - mkdir -p out && echo bytes > out/model.bin
  artifacts:
    paths: [out/]
"<img src=x onerror=alert(1)>":
  stage: test
  needs: [build]
  script:
    - echo tested
    - |
      cat > report.xml <<'XML'
      <testsuite name="unit">
        <testcase classname="m" name="ok" time="0.5"/>
        <testcase classname="m" name="bad" time="0.25">
          <failure message="boom">trace &lt;b&gt;</failure></testcase>
        <testcase classname="m" name="later"><skipped/></testcase>
      </testsuite>
      XML
  artifacts:
    reports:
      junit: report.xml
ship:
  stage: deploy
  when: manual
  script: [echo shipped]
"""


def test_pipeline_and_job_pages_show_status_graph_log_and_escape(ui: UI, tmp_path: Path) -> None:
    ui.project(tmp_path, "demo", CI)
    ui.api("PUT", "/projects/demo/variables/TOKEN", json={"value": "s3cr3t-value", "masked": True})
    pid = ui.run("demo")
    ui.wait("demo", pid)
    jobs = ui.jobs("demo", pid)
    assert jobs["build"]["status"] == "success" and jobs["ship"]["status"] == "manual"
    person = ui.browser()

    home = person.get("/")
    assert home.status_code == 200 and f'href="/projects/demo/pipelines/{pid}"' in home.text

    page = person.get(f"/projects/demo/pipelines/{pid}")
    assert page.status_code == 200
    text = page.text
    assert 'class="node s-success" data-job="build" data-status="success"' in text
    assert 'data-status="manual"' in text and "<svg" in text and "✓" in text and "▶" in text
    assert text.count('class="edge"') == 1  # the one `needs`
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert 'hx-trigger="every 2s"' not in text  # finished: no more polling
    assert f'href="/projects/demo/jobs/{jobs["build"]["id"]}/artifacts"' in text
    assert "Play" in text and "Retry" in text
    tests = re.sub(r"\s+", " ", text)
    assert "3 tests: <strong>1 passed</strong>, <strong>1 failed</strong>, 1 skipped" in tests
    assert "<code>m.bad</code>" in tests and "trace &lt;b&gt;" in tests and "<b>" not in tests

    log = person.get(f"/projects/demo/jobs/{jobs['build']['id']}")
    assert log.status_code == 200
    body = log.text
    assert '<span class="fg-2">green ok</span>' in body
    assert "<script>alert(1)</script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert '<details class="section"><summary>' in body  # collapsed=true: closed
    assert "Installing things" in body and "inside-the-section" in body
    assert re.search(r'id="L1"><a class="ln" href="#L1"', body)
    assert "s3cr3t-value" not in body and "[MASKED]" in body
    assert "\x1b" not in body

    raw = person.get(f"/projects/demo/jobs/{jobs['build']['id']}/raw")
    assert raw.headers["content-type"].startswith("text/plain") and "s3cr3t-value" not in raw.text
    zipped = person.get(f"/projects/demo/jobs/{jobs['build']['id']}/artifacts")
    assert zipped.status_code == 200 and zipped.headers["content-type"] == "application/zip"

    # the live log stream of a finished job: its lines as HTML, then the end
    events = person.get(f"/projects/demo/jobs/{jobs['build']['id']}/log/events").text
    assert "event: log" in events and "event: end" in events
    assert '<span class="fg-2">green ok</span> &lt;script&gt;' in events
    assert "s3cr3t-value" not in events

    fragment = person.get(f"/projects/demo/pipelines/{pid}/live")
    assert fragment.status_code == 200 and fragment.text.lstrip().startswith("<section")


def test_a_developer_plays_a_manual_job_and_retries(ui: UI, tmp_path: Path) -> None:
    ui.project(tmp_path, "demo", CI)
    token = ui.user("dev", "demo", "developer")
    pid = ui.run("demo")
    ui.wait("demo", pid)
    ship = ui.jobs("demo", pid)["ship"]
    person = ui.browser(token)
    page = person.get(f"/projects/demo/jobs/{ship['id']}")
    assert "Play" in page.text
    played = person.post(f"/projects/demo/jobs/{ship['id']}/play", data={"csrf": csrf_of(page.text)})
    assert played.status_code == 303 and played.headers["location"] == f"/projects/demo/jobs/{ship['id']}"
    assert ui.wait("demo", pid, frozenset({"success", "failed"})) == "success"
    assert ui.jobs("demo", pid)["ship"]["status"] == "success"
    assert "shipped" in person.get(f"/projects/demo/jobs/{ship['id']}").text

    page = person.get(f"/projects/demo/jobs/{ship['id']}")
    retried = person.post(f"/projects/demo/jobs/{ship['id']}/retry", data={"csrf": csrf_of(page.text)})
    assert retried.status_code == 303
    new_id = int(retried.headers["location"].rsplit("/", 1)[1])
    assert new_id != ship["id"]
    audit = [e["action"] for e in ui.api("GET", "/projects/demo/audit")]
    assert "job.play" in audit and "job.retry" in audit  # the API's own audit entries


def test_a_viewer_sees_no_buttons_and_a_forged_post_is_refused(ui: UI, tmp_path: Path) -> None:
    ui.project(tmp_path, "demo", CI)
    token = ui.user("watcher", "demo", "viewer")
    pid = ui.run("demo")
    ui.wait("demo", pid)
    ship = ui.jobs("demo", pid)["ship"]
    person = ui.browser(token)
    page = person.get(f"/projects/demo/pipelines/{pid}")
    assert page.status_code == 200
    assert "<button" not in page.text.split("</header>", 1)[1]  # only sign-out, in the header
    project = person.get("/projects/demo")
    assert "Run pipeline" not in project.text
    csrf = csrf_of(page.text)  # the viewer's own, valid CSRF token: the role check still refuses
    for path in (
        f"/projects/demo/jobs/{ship['id']}/play",
        f"/projects/demo/pipelines/{pid}/retry",
        f"/projects/demo/pipelines/{pid}/cancel",
        "/projects/demo/pipelines",
    ):
        refused = person.post(path, data={"csrf": csrf, "ref": "main"})
        assert refused.status_code == 403, (path, refused.text)
        assert "this needs the developer role" in refused.text
    assert ui.jobs("demo", pid)["ship"]["status"] == "manual"
    assert len(ui.api("GET", "/projects/demo/pipelines")) == 1


def test_csrf_is_checked_before_any_action(ui: UI, tmp_path: Path) -> None:
    ui.project(tmp_path, "demo", CI)
    pid = ui.run("demo")
    ui.wait("demo", pid)
    ship = ui.jobs("demo", pid)["ship"]
    admin = ui.browser()
    for data in ({}, {"csrf": "x" * 43}):
        refused = admin.post(f"/projects/demo/jobs/{ship['id']}/play", data=data)
        assert refused.status_code == 403 and "reload the page" in refused.text
    assert ui.jobs("demo", pid)["ship"]["status"] == "manual"
    page = admin.get("/projects/demo")
    too_long = admin.post("/projects/demo/pipelines", data={"csrf": csrf_of(page.text), "ref": "x" * 300})
    assert too_long.status_code == 422 and "ref" in too_long.text and "x" * 300 not in too_long.text
    assert len(ui.api("GET", "/projects/demo/pipelines")) == 1


def test_no_role_is_not_found_and_bad_ids_are_pages(ui: UI, tmp_path: Path) -> None:
    ui.project(tmp_path, "demo", CI)
    ui.project(tmp_path, "other", CI)
    token = ui.user("someone", "other", "viewer")
    person = ui.browser(token)
    home = person.get("/")
    assert "/projects/other" in home.text and "/projects/demo" not in home.text
    hidden = person.get("/projects/demo")
    assert (
        hidden.status_code == 404
        and "no project" in hidden.text
        and "text/html" in hidden.headers["content-type"]
    )
    for path in (
        "/projects/other/pipelines/0",
        "/projects/other/pipelines/99999999999999999999",
        "/projects/other/jobs/x",
    ):
        response = person.get(path)
        assert response.status_code == 404 and "text/html" in response.headers["content-type"], path


def test_a_long_log_shows_its_end_and_the_raw_log_all_of_it(ui: UI, tmp_path: Path) -> None:
    ci = "long:\n  script:\n    - seq 1 200000\n    - echo the-last-line\n"  # about 1.3 MB of output
    ui.project(tmp_path, "demo", ci)
    pid = ui.run("demo")
    assert ui.wait("demo", pid) == "success"
    job = ui.jobs("demo", pid)["long"]
    person = ui.browser()
    page = person.get(f"/projects/demo/jobs/{job['id']}").text
    assert "The start of this long log is left out here" in page and "the-last-line" in page
    assert '<span class="lt">1</span>' not in page
    # line numbers are the log's own: line N shows the number N-1 (the first line is the command)
    last = re.search(
        r'id="L(\d+)"><a class="ln" href="#L\d+" aria-label="line \d+">\d+</a><span class="lt">200000<', page
    )
    assert last and int(last.group(1)) == 200001, last
    raw = person.get(f"/projects/demo/jobs/{job['id']}/raw").text
    assert "\n1\n" in raw and "the-last-line" in raw
