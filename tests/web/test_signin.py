"""Sign-in, sessions, CSRF and the security headers of the UI, against the real app."""

from __future__ import annotations

from pathlib import Path

from conftest import UI, Browser, csrf_of

from aicd.web.security import CONTENT_SECURITY_POLICY

CI = "job:\n  script: [echo hi]\n"


def test_pages_need_a_session_and_the_form_signs_in(ui: UI, tmp_path: Path) -> None:
    ui.project(tmp_path, "demo", CI)
    anonymous = Browser(ui.client)
    response = anonymous.get("/projects/demo")
    assert response.status_code == 303 and response.headers["location"] == "/signin?next=%2Fprojects%2Fdemo"

    form = anonymous.get("/signin?next=/projects/demo")
    assert form.status_code == 200 and 'name="next" value="/projects/demo"' in form.text
    refused = anonymous.post("/signin", data={"token": "nope", "csrf": csrf_of(form.text), "next": "/"})
    assert refused.status_code == 401 and "invalid, expired or revoked" in refused.text
    assert "aicd_session" not in anonymous.cookies

    form = anonymous.get("/signin")
    done = anonymous.post(
        "/signin", data={"token": ui.admin_token, "csrf": csrf_of(form.text), "next": "/projects/demo"}
    )
    assert done.status_code == 303 and done.headers["location"] == "/projects/demo"
    cookie = done.headers["set-cookie"]
    assert "aicd_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert ui.admin_token not in cookie
    page = anonymous.get("/projects/demo")
    assert page.status_code == 200 and "<h1>demo</h1>" in page.text and "Run pipeline" in page.text


def test_signin_refuses_a_form_without_its_csrf_cookie_and_an_open_redirect(ui: UI) -> None:
    person = Browser(ui.client)
    response = person.post("/signin", data={"token": ui.admin_token, "csrf": "forged", "next": "/"})
    assert response.status_code == 403 and "aicd_session" not in person.cookies
    csrf = csrf_of(person.get("/signin").text)
    response = person.post(
        "/signin", data={"token": ui.admin_token, "csrf": csrf, "next": "//evil.example/x"}
    )
    assert response.status_code == 303 and response.headers["location"] == "/"


def test_signout_ends_the_session_and_needs_csrf(ui: UI) -> None:
    person = ui.browser()
    session = person.cookies["aicd_session"]
    home = person.get("/")
    assert home.status_code == 200
    assert person.post("/signout", data={}).status_code == 403  # no CSRF token: refused
    assert person.get("/").status_code == 200
    assert person.post("/signout", data={"csrf": csrf_of(home.text)}).status_code == 303
    assert "aicd_session" not in person.cookies
    person.replace_cookie("aicd_session", session)  # the old cookie, replayed: worthless now
    assert person.get("/").status_code == 303


def test_a_revoked_token_ends_its_sessions(ui: UI, tmp_path: Path) -> None:
    ui.project(tmp_path, "demo", CI)
    token = ui.user("dev", "demo", "developer")
    person = ui.browser(token)
    assert person.get("/projects/demo").status_code == 200
    user_id = next(u["id"] for u in ui.api("GET", "/users") if u["name"] == "dev")
    (listed,) = ui.api("GET", f"/users/{user_id}/tokens")
    ui.api("DELETE", f"/tokens/{listed['id']}")
    assert person.get("/projects/demo").status_code == 303


def test_security_headers_on_pages_not_on_the_api(ui: UI) -> None:
    person = ui.browser()
    for path in ("/", "/signin", "/static/app.css", "/static/vendor/htmx.min.js"):
        response = person.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
    assert (
        "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
        and "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    )
    assert person.get("/").headers["cache-control"] == "no-store"
    api = ui.client.get("/api/v1/health")
    assert "content-security-policy" not in api.headers
    page = person.get("/").text
    assert "<script>" not in page and " style=" not in page and "onclick" not in page


def test_a_live_fragment_sends_an_expired_session_to_its_page(ui: UI) -> None:
    anonymous = Browser(ui.client)
    headers = {"HX-Request": "true", "HX-Current-URL": "http://testserver/projects/demo/pipelines/3"}
    response = anonymous.get("/projects/demo/pipelines/3/live", headers=headers)
    assert response.status_code == 200
    assert response.headers["hx-redirect"] == "/signin?next=%2Fprojects%2Fdemo%2Fpipelines%2F3"
    headers["HX-Current-URL"] = "https://evil.example//x"
    response = anonymous.get("/projects/demo/pipelines/3/live", headers=headers)
    assert response.headers["hx-redirect"] == "/signin?next=%2F"


def test_sessions_expire_and_signing_in_again_replaces_the_session(ui: UI) -> None:
    from aicd.web.sessions import SessionStore

    store = SessionStore(idle_s=-1.0)  # every session is already idle too long
    session_id, _ = store.open(1, "h")
    assert store.get(session_id) is None
    store = SessionStore()
    session_id, session = store.open(1, "h")
    assert store.get(session_id) is session and store.get("other") is None and store.get("") is None
    store.close(session_id)
    assert store.get(session_id) is None

    person = ui.browser()
    first = person.cookies["aicd_session"]
    csrf = csrf_of(person.get("/signin").text)
    again = person.post("/signin", data={"token": ui.admin_token, "csrf": csrf, "next": "/"})
    assert again.status_code == 303 and person.cookies["aicd_session"] != first
    person.replace_cookie("aicd_session", first)
    assert person.get("/").status_code == 303


def test_htmx_requests_carry_the_csrf_token_in_a_header(ui: UI) -> None:
    person = ui.browser()
    page = person.get("/").text
    token = csrf_of(page)
    assert f'hx-headers=\'{{"X-CSRF-Token": "{token}"}}\'' in page
    assert person.post("/signout", headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert person.post("/signout", headers={"X-CSRF-Token": token}).status_code == 303
