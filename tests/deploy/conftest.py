"""The router's tests run on both of its data paths: the native plane and the Python path.

Every test of a ``test_router*`` module (but HAProxy's and the benchmark's) runs twice, with
``AICD_ROUTER_NATIVE=1`` (the native plane serves the requests it handles and hands the rest to
Python) and ``=0`` (the Python path serves everything); see ``aicd.deploy.router.native``.
"""

from __future__ import annotations

import os

import pytest

from aicd.deploy.router import native

_BOTH_PATHS_SKIPPED = {"test_router_haproxy", "test_router_bench", "test_router_native"}


def _both_paths(module_name: str) -> bool:
    name = module_name.rsplit(".", 1)[-1]
    return name.startswith("test_router") and name not in _BOTH_PATHS_SKIPPED


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "router_path" in metafunc.fixturenames and _both_paths(metafunc.module.__name__):
        metafunc.parametrize("router_path", ["native", "py"], indirect=True)


@pytest.fixture(autouse=True)
def router_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """The router's data path for this test (None: not a router test, nothing set)."""
    path = getattr(request, "param", None)
    if path == "native":
        if native.available() is None:
            why = (
                "the router's native plane was not built (it needs gcc and the Python headers at "
                "`pip install -e .`); AICD_TESTS_WITHOUT_NATIVE=1 skips its variants where they are missing"
            )
            if os.environ.get("AICD_TESTS_WITHOUT_NATIVE") == "1":
                pytest.skip(why)
            pytest.fail(why)  # never a silent skip: CI builds it, and a broken build must show
        monkeypatch.setenv(native.ENV, "1")
    elif path == "py":
        monkeypatch.setenv(native.ENV, "0")
    return path
