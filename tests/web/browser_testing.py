"""Shared by the browser tests: Debian's chromium through Playwright, a page whose console errors
are collected and which is checked by axe-core at each screenshot, and the sign-in form."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

try:
    from axe_playwright_python.sync_playwright import Axe
    from playwright import sync_api as playwright_api
except ImportError:  # a failure with what to do (in the fixture), not a skip
    playwright_api = None  # type: ignore[assignment]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 90_000  # generous: the machine may be busy
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 360, "height": 740}


def chromium_path() -> str:
    found = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    if not found:
        pytest.fail(
            "chromium is not installed: the browser tests drive Debian's chromium. "
            "Install it with `apt-get install -y chromium` (.ci/run does) and run the tests again."
        )
    return found


class Watched:
    """A page whose console errors and uncaught exceptions are collected (and must stay none)."""

    def __init__(self, browser: Any, viewport: dict[str, int], shots: Path) -> None:
        self.context = browser.new_context(viewport=viewport)
        self.context.set_default_timeout(WAIT_MS)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.shots = shots
        shots.mkdir(parents=True, exist_ok=True)

    def shot(self, name: str) -> None:
        """A screenshot, and axe-core's accessibility check of the page (no serious violation)."""
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)
        results = Axe().run(self.page)
        serious = [
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in results.response["violations"]
            if v.get("impact") in ("serious", "critical")
        ]
        assert serious == [], f"{name}: accessibility violations: {serious}"

    def close(self) -> None:
        self.context.close()
        assert self.errors == [], f"console errors: {self.errors}"


def sign_in(watched: Watched, server: Any, token: str) -> None:
    page = watched.page
    page.goto(f"{server.url}/")
    page.wait_for_url(re.compile(r"/signin"))
    watched.shot("signin")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("h1:has-text('Projects')")


def launch_browser() -> Iterator[Any]:
    """Headless chromium (a failure saying what to install when it or Playwright is missing)."""
    path = chromium_path()
    if playwright_api is None:
        pytest.fail("Playwright is not installed: pip install -e '.[dev]' (it brings pytest-playwright)")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()
