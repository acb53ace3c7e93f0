"""The registry's core API (aicd.delivery.registry) on a real home and SQLite database:
content-addressed artifacts, URIs, lineage from the environment, and bad input changing nothing."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aicd.delivery.lineage import Lineage
from aicd.delivery.model_uri import ModelURI, model_ref, parse_model_uri
from aicd.delivery.objects import ObjectStore, dataset_digest, write_tar
from aicd.delivery.registry import Registry, parse_tags
from aicd.errors import ConfigError, ConflictError, NotFoundError, StoreError
from aicd_testing import git, make_repo

LINEAGE = Lineage(commit_sha="ab" * 20, ref="main", pipeline_id=7, job_id=9, project="g/p", user="ci")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def registry(home: Path, tmp_path: Path) -> Iterator[Registry]:
    env = {"AICD_HOME": str(home)}
    with Registry.open_local(tmp_path, env) as reg:
        yield reg


def _folder(root: Path, mtime: float = 1_000_000.0) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "weights.bin").write_bytes(bytes(range(256)) * 10)
    (root / "sub" / "info.json").write_text('{"v": 1}\n')
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    for path in [root / "weights.bin", root / "sub" / "info.json", root / "run.sh", root / "sub"]:
        os.utime(path, (mtime, mtime))
    return root


def _metrics(path: Path, values: dict[str, float]) -> Path:
    path.write_text(json.dumps(values))
    return path


# -- objects ---------------------------------------------------------------------------------------


def test_a_folder_digest_depends_only_on_its_content(tmp_path: Path) -> None:
    a = _folder(tmp_path / "a", mtime=1_000_000.0)
    b = _folder(tmp_path / "b", mtime=2_000_000.0)
    assert dataset_digest(a) == dataset_digest(b)
    (b / "sub" / "info.json").write_text('{"v": 2}\n')
    assert dataset_digest(a) != dataset_digest(b)
    (tmp_path / "c").mkdir()
    with pytest.raises(ConfigError, match="symbolic links cannot be stored"):
        (tmp_path / "c" / "link").symlink_to(a / "weights.bin")
        write_tar(tmp_path / "c", (tmp_path / "x.tar").open("wb"))


def test_register_stores_content_addressed_objects_and_download_restores_them(
    registry: Registry, home: Path, tmp_path: Path
) -> None:
    folder = _folder(tmp_path / "model")
    metrics = _metrics(tmp_path / "m.json", {"accuracy": 0.97, "eval": {"f1": 0.9}})  # type: ignore[dict-item]
    v1 = registry.register(
        "iris", folder, metrics=metrics, tags={"fw": "sk"}, dataset=folder, lineage=LINEAGE, alias="staging"
    )
    assert (v1.version, v1.artifact_name, v1.aliases) == (1, "model/", ("staging",))
    assert v1.metrics == {"accuracy": 0.97, "eval.f1": 0.9}
    assert v1.dataset_hash == dataset_digest(folder) == v1.artifact_digest
    assert (v1.commit_sha, v1.pipeline_id, v1.job_id, v1.project, v1.created_by) == (
        "ab" * 20,
        7,
        9,
        "g/p",
        "ci",
    )
    assert v1.artifact_digest is not None
    hexdigest = v1.artifact_digest.removeprefix("sha256:")
    stored = home / "objects" / "sha256" / hexdigest[:2] / hexdigest[2:]
    assert stored.is_file() and stored.stat().st_size == v1.artifact_size

    v2 = registry.register("iris", folder, lineage=LINEAGE)  # same content: same object, new version
    assert v2.version == 2 and v2.artifact_digest == v1.artifact_digest
    assert len(list((home / "objects" / "sha256").rglob("*"))) == 2  # one folder, one object

    single = tmp_path / "model.joblib"
    single.write_bytes(b"joblib bytes")
    v3 = registry.register("iris", single, lineage=LINEAGE)
    assert v3.artifact_name == "model.joblib" and v3.artifact_size == len(b"joblib bytes")

    out = tmp_path / "out"
    record, path = registry.download("models:/iris@staging", out)
    assert record.version == 1 and path == out / "model"
    for rel in ("weights.bin", "sub/info.json", "run.sh"):
        assert (path / rel).read_bytes() == (folder / rel).read_bytes()
    assert os.access(path / "run.sh", os.X_OK) and not os.access(path / "weights.bin", os.X_OK)
    assert (path / "weights.bin").stat().st_mtime > time.time() - 60  # not the tar's 1970
    _record, file_path = registry.download("models:/iris", out)
    assert file_path.read_bytes() == b"joblib bytes"
    with pytest.raises(ConflictError, match="exists already"):
        registry.download("models:/iris/1", out)
    registry.download("models:/iris/1", out, force=True)


def test_a_corrupt_object_is_refused_and_nothing_is_written(registry: Registry, tmp_path: Path) -> None:
    artifact = tmp_path / "model.bin"
    artifact.write_bytes(b"good model")
    record = registry.register("iris", artifact, lineage=LINEAGE)
    assert record.artifact_digest is not None
    stored = registry.objects.path_of(record.artifact_digest)
    stored.chmod(0o644)
    stored.write_bytes(b"evil model")
    with pytest.raises(StoreError, match="is corrupt"):
        registry.download("models:/iris/1", tmp_path / "out")
    assert not (tmp_path / "out" / "model.bin").exists()
    # the repair the error names: registering the model again replaces the corrupt object
    again = registry.register("iris", artifact, lineage=LINEAGE)
    assert again.artifact_digest == record.artifact_digest
    assert stored.read_bytes() == b"good model" and not stored.stat().st_mode & 0o222
    for uri in ("models:/iris/1", "models:/iris/2"):
        _, path = registry.download(uri, tmp_path / uri[-1])
        assert path.read_bytes() == b"good model"
    stored.unlink()
    with pytest.raises(StoreError, match="is missing from the object store"):
        registry.download("models:/iris/1", tmp_path / "out")


def test_object_store_refuses_bytes_with_another_digest(tmp_path: Path) -> None:
    objects = ObjectStore(tmp_path)
    with pytest.raises(ConfigError, match="the upload was damaged"):
        objects.put_stream([b"abc"], expected="sha256:" + "0" * 64)
    assert not any(p.is_file() for p in (tmp_path / "objects").rglob("*"))
    with pytest.raises(ConfigError, match="is not a digest"):
        objects.path_of("sha256:../../etc")


# -- URIs and aliases ------------------------------------------------------------------------------


def test_model_uris() -> None:
    assert parse_model_uri("models:/iris@production") == ModelURI("iris", alias="production")
    assert parse_model_uri("models:/iris/3") == ModelURI("iris", version=3)
    assert parse_model_uri("models:/iris") == ModelURI("iris")
    assert parse_model_uri("models:/iris/latest") == ModelURI("iris")
    assert str(ModelURI("iris", alias="production")) == "models:/iris@production"
    assert model_ref("iris", "2") == ModelURI("iris", version=2)
    assert model_ref("iris", "production") == ModelURI("iris", alias="production")
    assert model_ref("iris") == ModelURI("iris")
    for bad, message in [
        ("iris@production", "not a model URI"),
        ("models:/", "the model name is missing"),
        ("models:/iris@", "the alias after '@' is missing"),
        ("models:/iris/0", "numbered from 1"),
        ("models:/iris/x", "expected a version number"),
        ("models:/iris/1/2", "too many '/'"),
        ("models:/ir is", "not a valid model name"),
        ("models:/iris@12", "not a valid alias"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_model_uri(bad)


def test_alias_moves_and_resolution(registry: Registry, tmp_path: Path) -> None:
    artifact = tmp_path / "m.bin"
    artifact.write_bytes(b"x")
    for _ in range(2):
        registry.register("iris", artifact, lineage=LINEAGE)
    assert registry.set_alias("iris", "production", 1)[1] is None
    assert registry.set_alias("iris", "production", "2")[1] == 1
    assert registry.resolve("models:/iris@production").version == 2
    with pytest.raises(ConfigError, match="cannot be an alias"):
        registry.set_alias("iris", "latest", 1)
    with pytest.raises(NotFoundError, match="has no version 3"):
        registry.set_alias("iris", "production", 3)
    assert registry.resolve("models:/iris@production").version == 2
    assert registry.remove_alias("iris", "production").version == 2
    with pytest.raises(NotFoundError):
        registry.resolve("models:/iris@production")


def test_baseline_is_none_only_for_a_first_release(registry: Registry, tmp_path: Path) -> None:
    missing = registry.baseline("models:/iris@production")
    assert missing.version is None and missing.metrics is None
    assert missing.note == "model 'iris' has no versions yet: its first release"
    artifact = tmp_path / "m.bin"
    artifact.write_bytes(b"x")
    registry.register("iris", artifact, metrics={"accuracy": 0.5}, lineage=LINEAGE)
    # versions, but never the alias: a typo, not a first release
    with pytest.raises(ConfigError, match="model 'iris' has version 1 but never had the alias 'production'"):
        registry.baseline("models:/iris@production")
    with pytest.raises(ConfigError, match="no model named 'iriss' \\(did you mean \"iris\"\\?\\)"):
        registry.baseline("models:/iriss@production")
    assert registry.baseline("models:/wine@production").note.endswith("its first release")
    registry.set_alias("iris", "production", 1)
    found = registry.baseline("models:/iris@production")
    assert found.metrics == {"accuracy": 0.5} and found.note == ""
    with pytest.raises(ConfigError, match='did you mean "production"'):
        registry.baseline("models:/iris@prodution")
    registry.remove_alias("iris", "production")
    removed = registry.baseline("models:/iris@production")
    assert removed.version is None and removed.note.endswith("any more (it was removed)")


def test_versions_for_a_commit_prefix(registry: Registry, tmp_path: Path) -> None:
    artifact = tmp_path / "m.bin"
    artifact.write_bytes(b"x")
    registry.register("iris", artifact, lineage=LINEAGE)
    assert [v.version for v in registry.versions_for_commit("ABAB")] == [1]
    with pytest.raises(ConfigError, match="at least 4 hex digits"):
        registry.versions_for_commit("ab")
    with pytest.raises(ConfigError, match="at least 4 hex digits"):
        registry.versions_for_commit("zzzz%")


# -- bad input changes nothing ---------------------------------------------------------------------


def test_bad_input_is_a_clear_error_and_changes_nothing(
    registry: Registry, home: Path, tmp_path: Path
) -> None:
    artifact = tmp_path / "m.bin"
    artifact.write_bytes(b"x")
    (tmp_path / "bad.json").write_text('{"accuracy": "high"}')
    (tmp_path / "broken.json").write_text('{"accuracy": 0.9,')
    (tmp_path / "nan.json").write_text('{"accuracy": NaN}')
    cases: list[tuple[dict[str, object], str]] = [
        ({"metrics": tmp_path / "bad.json"}, 'metric "accuracy" is a string'),
        ({"metrics": tmp_path / "broken.json"}, "not valid JSON"),
        ({"metrics": tmp_path / "nan.json"}, "needs finite metrics"),
        ({"metrics": tmp_path / "none.json"}, "no such metrics file"),
        ({"metrics": {"accuracy": True}}, "not a number"),
        ({"tags": {"": "x"}}, "tag ''"),
        ({"dataset": artifact, "dataset_hash": "sha256:00"}, "not both"),
        ({"dataset_hash": "has spaces"}, "data set hash"),
        ({"dataset": tmp_path / "nodata"}, "no such data set"),
        ({"alias": "latest"}, "cannot be an alias"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ConfigError, match=message):
            registry.register("iris", artifact, lineage=LINEAGE, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no such model file or folder"):
        registry.register("iris", tmp_path / "missing", lineage=LINEAGE)
    with pytest.raises(ConfigError, match="not a valid model name"):
        registry.register("iris/1", artifact, lineage=LINEAGE)
    assert registry.store.list_models() == []
    assert not (home / "objects").exists()
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_tags(["novalue"])
    assert parse_tags(["a=b=c", "x="]) == {"a": "b=c", "x": ""}


# -- lineage from the environment ------------------------------------------------------------------


def test_lineage_from_gitlab_ci_variables() -> None:
    env = {
        "CI_COMMIT_SHA": "F" * 40,
        "CI_COMMIT_REF_NAME": "feature",
        "CI_PIPELINE_ID": "12",
        "CI_JOB_ID": "34",
        "CI_PROJECT_PATH": "group/proj",
        "CI_PROJECT_DIR": "/builds/x",
        "CI_PIPELINE_URL": "https://gitlab.example.com/group/proj/-/pipelines/12",
        "GITLAB_USER_LOGIN": "ann",
        "USER": "root",
    }
    lineage = Lineage.from_env(env)
    assert lineage == Lineage("f" * 40, "feature", 12, 34, "group/proj", env["CI_PIPELINE_URL"], "ann")
    no_path = Lineage.from_env({**env, "CI_PROJECT_PATH": "", "CI_PIPELINE_ID": "abc"})
    assert no_path.project == "/builds/x" and no_path.pipeline_id is None
    assert Lineage.from_env({"CI_PIPELINE_ID": "1", "CI_COMMIT_SHA": "0" * 40}).commit_sha is None


def test_lineage_from_github_actions() -> None:
    env = {
        "GITHUB_SHA": "a" * 40,
        "GITHUB_REF_NAME": "main",
        "GITHUB_RUN_ID": "99",
        "GITHUB_REPOSITORY": "o/r",
    }
    lineage = Lineage.from_env(env)
    assert (lineage.commit_sha, lineage.ref, lineage.pipeline_id, lineage.project) == (
        "a" * 40,
        "main",
        99,
        "o/r",
    )
    assert lineage.pipeline_url == "https://github.com/o/r/actions/runs/99"


def test_lineage_outside_ci_is_the_git_commit_of_the_folder(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a"})
    lineage = Lineage.from_env({"USER": "me"}, repo)
    assert lineage.commit_sha == git(repo, "rev-parse", "HEAD")
    assert (lineage.ref, lineage.user, lineage.project) == ("main", "me", str(repo.resolve()))
    plain = tmp_path / "plain"
    plain.mkdir()
    outside = Lineage.from_env({"USER": "me"}, plain)
    assert outside.commit_sha is None and outside.pipeline_id is None and outside.user == "me"
