"""Caches of the local executor: keys, policies, when, fallback keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from aicd.executors.cache import cache_key, safe_key
from aicd.executors.local import LocalExecutor
from aicd.pipeline.ir import Cache, Variable

from .contract import Ran, Runner, Session, make_job, make_project


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    project = make_project(tmp_path / "project", {"lock.json": "v1\n", "README.md": "x\n"})
    return Runner(lambda p, h: LocalExecutor(p, h), project, tmp_path / "home", tmp_path / "run")


def run_all(runner: Runner, *jobs: tuple[object, ...]) -> list[Ran]:
    async def body(s: Session) -> list[Ran]:
        out = []
        for job, variables in jobs:
            out.append(await s.run(job, variables=variables))  # type: ignore[arg-type]
        return out

    result: list[Ran] = runner.session(body)
    return result


def test_pull_push_then_pull(runner: Runner) -> None:
    writer = make_job(
        "mkdir -p cache && echo warm > cache/f.txt", name="w", cache=(Cache(paths=("cache/**.txt",)),)
    )
    reader = make_job(
        "cat cache/f.txt",
        "echo changed > cache/f.txt",
        name="r",
        cache=(Cache(paths=("cache",), policy="pull"),),
    )
    again = make_job("cat cache/f.txt", name="r2", cache=(Cache(paths=("cache",), policy="pull"),))
    w, r, r2 = run_all(runner, (writer, ()), (reader, ()), (again, ()))
    assert w.outcome.status == "success"
    assert any("Saved cache 'default'" in line for line in w.info)
    assert r.out == ["warm"]
    assert r2.out == ["warm"]  # pull never saves
    assert (runner.home / "cache" / "default" / "cache" / "f.txt").read_text() == "warm\n"


def test_push_policy_does_not_restore(runner: Runner) -> None:
    first = make_job("mkdir -p c && echo 1 > c/v", name="a", cache=(Cache(key="k", paths=("c",)),))
    push_only = make_job("test ! -e c/v", name="b", cache=(Cache(key="k", paths=("c",), policy="push"),))
    a, b = run_all(runner, (first, ()), (push_only, ()))
    assert a.outcome.status == "success"
    assert b.outcome.status == "success", b.lines
    assert any("no matching files" in line for line in b.info)


@pytest.mark.parametrize(
    ("when", "fails", "saved"),
    [
        ("on_success", False, True),
        ("on_success", True, False),
        ("on_failure", False, False),
        ("on_failure", True, True),
        ("always", False, True),
        ("always", True, True),
    ],
)
def test_cache_when(runner: Runner, when: str, fails: bool, saved: bool) -> None:
    key = f"{when}-{fails}"
    job = make_job(
        "mkdir -p cache && touch cache/file1.txt",
        *(["exit 1"] if fails else []),
        cache=(Cache(key=key, paths=("cache",), policy="push", when=when),),  # type: ignore[arg-type]
    )
    (ran,) = run_all(runner, (job, ()))
    assert ran.outcome.status == ("failed" if fails else "success")
    assert (runner.home / "cache" / key / "cache" / "file1.txt").exists() is saved


def test_key_is_expanded_and_isolates(runner: Runner) -> None:
    writer = make_job(
        "mkdir -p c && echo $REF > c/v", name="w", cache=(Cache(key="deps-$REF", paths=("c",)),)
    )
    reader = make_job(
        "cat c/v 2>/dev/null || echo none", name="r", cache=(Cache(key="deps-$REF", paths=("c",)),)
    )
    _, main, other = run_all(
        runner,
        (writer, [Variable("REF", "main")]),
        (reader, [Variable("REF", "main")]),
        (reader, [Variable("REF", "feature")]),
    )
    assert main.out == ["main"]
    assert other.out == ["none"]
    assert any("No cache found for key 'deps-feature'" in line for line in other.info)


def test_fallback_keys(runner: Runner) -> None:
    writer = make_job(
        "mkdir -p c && echo from-main > c/v", name="w", cache=(Cache(key="main", paths=("c",)),)
    )
    reader = make_job(
        "cat c/v", name="r", cache=(Cache(key="feature", paths=("c",), fallback_keys=("nothing", "$BASE")),)
    )
    _, r = run_all(runner, (writer, ()), (reader, [Variable("BASE", "main")]))
    assert r.out == ["from-main"]
    assert any("Restored cache 'main'" in line for line in r.info)


def test_untracked_cache(runner: Runner) -> None:
    job = make_job("echo new > made.txt", "echo edit >> README.md", cache=(Cache(key="u", untracked=True),))
    (ran,) = run_all(runner, (job, ()))
    assert ran.outcome.status == "success"
    stored = runner.home / "cache" / "u"
    assert sorted(p.name for p in stored.rglob("*")) == ["made.txt"]


def test_key_files(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "lock.json").write_text("v1")
    entry = Cache(key_files=("$LOCK",), key_prefix="deps")
    expand_ = {"LOCK": "lock.json"}

    def expand(text: str) -> str:
        return text.replace("$LOCK", expand_["LOCK"])

    k1 = cache_key(entry, ws, expand)
    assert k1.startswith("deps-") and len(k1) == len("deps-") + 40
    assert cache_key(entry, ws, expand) == k1
    (ws / "lock.json").write_text("v2")
    k2 = cache_key(entry, ws, expand)
    assert k2 != k1
    assert cache_key(Cache(key_files=("missing.json",)), ws, expand) == "default"
    assert cache_key(Cache(key_files=("missing.json",), key_prefix="p"), ws, expand) == "p-default"
    assert cache_key(Cache(key="  "), ws, expand) == "default"


def test_safe_key() -> None:
    assert safe_key("default") == "default"
    assert safe_key("feature/x").startswith("feature_x-")
    assert safe_key("feature/x") != safe_key("feature_x")
    assert safe_key("..") not in ("..", ".")
    assert "/" not in safe_key("../../etc")


def test_a_key_expanded_too_long_for_a_folder_name_still_names_one(tmp_path: Path) -> None:
    """A cache:key built from variables may expand past a file name's 255 bytes: it is shortened
    with a digest (the literal case is a lint error), so the job does not fail with an OSError."""
    from aicd.executors.cache import cache_path

    long_a, long_b = "k" * 400, "k" * 399 + "j"
    path_a, path_b = cache_path(tmp_path, long_a), cache_path(tmp_path, long_b)
    assert path_a != path_b and len(path_a.name) < 100
    path_a.mkdir()
    assert cache_path(tmp_path, "short-key").name == "short-key"
