"""The model registry's core API: what `aicd model ...` and the server's /models routes call.

A :class:`Registry` is a :class:`~aicd.store.registry.RegistryStore` (models,
versions, aliases: rows in the run-history database) plus an
:class:`~aicd.delivery.objects.ObjectStore` (the artifacts, content-addressed
under the aicd home). Locally both are where `aicd run` keeps its history
(``AICD_HOME``, ``AICD_DATABASE_URL``, default ``<project>/.aicd/``); inside a
job of `aicd run` the executor exports ``AICD_HOME`` so a job registers into
the same registry, and the lineage comes from the job's ``CI_*`` variables.

Every input is checked before anything is written: bad input changes nothing.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from aicd.delivery.lineage import Lineage, current_user
from aicd.delivery.model_uri import ModelURI, check_alias, check_name, check_version, parse_model_uri
from aicd.delivery.objects import KIND_DIR, KIND_FILE, ObjectStore, StoredObject, dataset_digest
from aicd.errors import ConfigError, NotFoundError
from aicd.store.registry import (
    AliasEvent,
    AliasRecord,
    ModelRecord,
    ModelVersionRecord,
    NewVersion,
    PipelineLink,
    RegistryStore,
    open_registry,
)
from aicd.suggest import closest, did_you_mean

__all__ = [
    "AliasEvent",
    "AliasRecord",
    "Baseline",
    "Lineage",
    "ModelRecord",
    "ModelVersionRecord",
    "Registry",
    "VersionLineage",
    "artifact_kind",
    "check_artifact_name",
    "check_dataset_hash",
    "check_metrics",
    "check_tags",
    "parse_model_uri",
    "parse_tags",
]

MAX_TAGS = 100
DATASET_HASH_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._+-]{0,79}")
TAG_KEY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,99}")


@dataclass(frozen=True)
class VersionLineage:
    """A version and where it came from; `pipeline` when the pipeline is in this database."""

    version: ModelVersionRecord
    pipeline: PipelineLink | None


@dataclass(frozen=True)
class Baseline:
    """The baseline a gate compares against: a version's metrics, or None with the reason."""

    uri: str
    version: ModelVersionRecord | None
    note: str  # why there is none (empty when there is one)

    @property
    def metrics(self) -> dict[str, float] | None:
        if self.version is None:
            return None
        return dict(self.version.metrics or {})


# -- input checks ----------------------------------------------------------------------------------


def check_metrics(metrics: Mapping[str, object], source: str = "metrics") -> dict[str, float]:
    """name -> finite number (a registered model's metrics are a future gate's baseline)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f"{source}: a metric needs a name, not {key!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f'{source}: metric "{key}" is {value!r}, not a number')
        number = float(value)
        if not math.isfinite(number):
            raise ConfigError(
                f'{source}: metric "{key}" is {value}: a registered model needs finite metrics '
                "(a NaN or infinite value never passes a gate)"
            )
        out[key] = number
    return out


def check_tags(tags: Mapping[str, object]) -> dict[str, str]:
    if len(tags) > MAX_TAGS:
        raise ConfigError(f"too many tags ({len(tags)}): at most {MAX_TAGS}")
    out: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not TAG_KEY_RE.fullmatch(key):
            raise ConfigError(
                f"tag {key!r}: a tag key is letters, digits, '_', '.', ':', '/' and '-' (at most 100)"
            )
        if not isinstance(value, str) or len(value) > 500:
            raise ConfigError(f"tag {key!r}: the value must be text of at most 500 characters")
        out[key] = value
    return out


def parse_tags(pairs: Iterable[str]) -> dict[str, str]:
    """`--tag key=value` flags."""
    out: dict[str, str] = {}
    for text in pairs:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--tag {text!r}: expected KEY=VALUE, e.g. --tag framework=sklearn")
        out[key.strip()] = value
    return check_tags(out)


def check_dataset_hash(text: str) -> str:
    text = text.strip()
    if not DATASET_HASH_RE.fullmatch(text):
        raise ConfigError(
            f"data set hash {text!r}: expected e.g. sha256:<hex> (letters, digits, ':', '.', '_', '+', '-'; "
            "at most 80 characters)"
        )
    return text


def check_artifact_name(name: str) -> str:
    """A file name, or a folder name followed by '/'."""
    bare = name[:-1] if name.endswith("/") else name
    if not bare or "/" in bare or "\\" in bare or bare in (".", "..") or len(bare) > 255 or "\0" in bare:
        raise ConfigError(
            f"artifact name {name!r}: expected a file name (model.joblib) "
            "or a folder name ending in '/' (model/)"
        )
    return name


def artifact_kind(name: str | None) -> str:
    return KIND_DIR if name is not None and name.endswith("/") else KIND_FILE


def _artifact_name(path: Path) -> str:
    name = path.resolve().name or "artifact"
    return f"{name}/" if path.is_dir() else name


# -- the registry ----------------------------------------------------------------------------------


class Registry:
    def __init__(self, store: RegistryStore, objects: ObjectStore) -> None:
        self.store = store
        self.objects = objects
        self.home = objects.root.parent.parent  # <home>/objects/sha256: where hooks are configured

    def _event(self, event: str, data: Mapping[str, object]) -> None:
        from aicd.delivery.hooks import emit

        emit(self.home, event, data)

    def _registered(self, record: ModelVersionRecord, alias: str | None) -> ModelVersionRecord:
        data = {"model": record.model, "version": record.version}
        self._event(
            "model.registered",
            {
                **data,
                "uri": record.uri,
                "digest": record.artifact_digest,
                "metrics": record.metrics,
                "commit": record.commit_sha,
                "project": record.project,
                "by": record.created_by,
            },
        )
        if alias is not None:
            self._event("alias.moved", {**data, "alias": alias, "previous": None})
        return record

    @classmethod
    def open_local(cls, cwd: Path, environ: Mapping[str, str] | None = None) -> Registry:
        """The registry `aicd run` in `cwd` uses (AICD_HOME, AICD_DATABASE_URL, else cwd/.aicd/)."""
        home, url = local_location(cwd, environ)
        return cls(open_registry(url), ObjectStore(home))

    @classmethod
    def open_local_if_exists(cls, cwd: Path, environ: Mapping[str, str] | None = None) -> Registry | None:
        """As open_local, but None when the default SQLite database does not exist (nothing registered)."""
        home, url = local_location(cwd, environ)
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
            return None
        return cls(open_registry(url), ObjectStore(home))

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- writes ---------------------------------------------------------------------------------

    def register(
        self,
        name: str,
        artifact: Path,
        *,
        metrics: Path | Mapping[str, object] | None = None,
        metrics_display: str | None = None,
        tags: Mapping[str, object] | None = None,
        dataset: Path | None = None,
        dataset_hash: str | None = None,
        description: str | None = None,
        alias: str | None = None,
        lineage: Lineage | None = None,
        actor: str | None = None,
    ) -> ModelVersionRecord:
        """Store `artifact` (a file or a folder) and record it as the next version of `name`."""
        check_name(name)
        if alias is not None:
            check_alias(alias)
        if dataset is not None and dataset_hash is not None:
            raise ConfigError("give the data set as a path or as a hash, not both")
        values = self._metrics(metrics, metrics_display)
        clean_tags = None if tags is None else check_tags(tags)
        if dataset is not None:
            dataset_hash = dataset_digest(dataset)
        elif dataset_hash is not None:
            dataset_hash = check_dataset_hash(dataset_hash)
        if not artifact.exists():
            raise ConfigError(f"{artifact}: no such model file or folder")
        lineage = lineage or Lineage.from_env(os.environ)
        obj, _kind = self.objects.put_path(artifact)
        record = self.store.register_version(
            name,
            _new_version(obj, _artifact_name(artifact), values, clean_tags, dataset_hash, lineage),
            description=description,
            alias=alias,
            actor=actor or lineage.user or "local",
        )
        return self._registered(record, alias)

    def register_object(
        self,
        name: str,
        obj: StoredObject,
        artifact_name: str,
        *,
        metrics: Mapping[str, object] | None = None,
        tags: Mapping[str, object] | None = None,
        dataset_hash: str | None = None,
        description: str | None = None,
        alias: str | None = None,
        lineage: Lineage,
        actor: str,
        project_id: int | None = None,
        check_owner: bool = False,
    ) -> ModelVersionRecord:
        """Record an object already in the store (the server, after an upload) as the next version
        (of a model of `project_id`: with `check_owner`, one that exists must be that project's)."""
        check_name(name)
        check_artifact_name(artifact_name)
        if alias is not None:
            check_alias(alias)
        if not self.objects.has(obj.digest):
            raise ConfigError(f"object {obj.digest} is not in the object store: upload it first")
        record = self.store.register_version(
            name,
            _new_version(
                obj,
                artifact_name,
                None if metrics is None else check_metrics(metrics),
                None if tags is None else check_tags(tags),
                None if dataset_hash is None else check_dataset_hash(dataset_hash),
                lineage,
            ),
            description=description,
            alias=alias,
            actor=actor,
            project_id=project_id,
            check_owner=check_owner,
        )
        return self._registered(record, alias)

    @staticmethod
    def _metrics(metrics: Path | Mapping[str, object] | None, display: str | None) -> dict[str, float] | None:
        if metrics is None:
            return None
        if isinstance(metrics, Path):
            from aicd.delivery.metrics_file import read_metrics_file

            name = display or str(metrics)
            return check_metrics(read_metrics_file(metrics, name), name)
        return check_metrics(metrics)

    def set_alias(
        self, name: str, alias: str, version: int | str, *, actor: str | None = None
    ) -> tuple[AliasRecord, int | None]:
        """Point (or move) `alias` at `version`; returns it and the version it pointed at before."""
        check_name(name)
        check_alias(alias)
        moved = self.store.set_alias(name, alias, check_version(version), actor=actor or _user())
        self._event(
            "alias.moved", {"model": name, "alias": alias, "version": moved[0].version, "previous": moved[1]}
        )
        return moved

    def remove_alias(self, name: str, alias: str, *, actor: str | None = None) -> AliasRecord:
        check_name(name)
        check_alias(alias)
        removed = self.store.delete_alias(name, alias, actor=actor or _user())
        self._event(
            "alias.moved", {"model": name, "alias": alias, "version": None, "previous": removed.version}
        )
        return removed

    # -- reads ----------------------------------------------------------------------------------

    def resolve(self, uri: ModelURI | str) -> ModelVersionRecord:
        """The version a URI names. NotFoundError for an unknown model, version or alias."""
        ref = parse_model_uri(uri) if isinstance(uri, str) else uri
        if ref.alias is not None:
            return self.store.resolve_alias(ref.name, ref.alias)
        if ref.version is not None:
            return self.store.get_version(ref.name, ref.version)
        return self.store.latest_version(ref.name)

    def baseline(self, uri: ModelURI | str) -> Baseline:
        """The gate's baseline: the version behind `uri`; none only for a first release.

        The one place that decides (the CLI's local gate and the server's API both call it):

        - the version `uri` names: the baseline;
        - a model with no version yet (not registered, and no model of a similar name): a first
          release, nothing to compare with: no baseline, and the note says why;
        - an alias the model had but that was removed since: no baseline, with a note;
        - anything else cannot be resolved and is a mistake: ConfigError (exit 2) with a
          did-you-mean: an unknown model whose name is close to a registered one, an alias a
          model with versions never had, a version number it does not have.
        """
        ref = parse_model_uri(uri) if isinstance(uri, str) else uri
        try:
            return Baseline(str(ref), self.resolve(ref), "")
        except NotFoundError as exc:
            missing = str(exc)
        models = {m.name: m for m in self.store.list_models()}
        model = models.get(ref.name)
        if model is None:
            similar = closest(ref.name, models)
            if similar is None:
                return Baseline(str(ref), None, f"model {ref.name!r} has no versions yet: its first release")
            raise ConfigError(
                f"the baseline {ref} cannot be resolved: no model named {ref.name!r} "
                f'(did you mean "{similar}"?); models: {", ".join(sorted(models))}. A gate without its '
                "baseline would skip the regression check; fix the name (a new model's first release "
                "has no baseline: leave it out)"
            )
        if model.last_version == 0:
            return Baseline(str(ref), None, f"model {ref.name!r} has no versions yet: its first release")
        if ref.alias is not None:
            history = self.store.alias_history(ref.name)
            if any(event.alias == ref.alias for event in history):
                removed = f"model {ref.name!r} has no alias {ref.alias!r} any more (it was removed)"
                return Baseline(str(ref), None, removed)
            seen = sorted({*model.aliases, *(event.alias for event in history)})
            hint = did_you_mean(ref.alias, seen)
            raise ConfigError(
                f"the baseline {ref} cannot be resolved: model {ref.name!r} has "
                f"{_versions(model.last_version)} but never had the alias {ref.alias!r}{hint}; its "
                f"aliases: {', '.join(sorted(model.aliases)) or 'none yet'}. A gate without its baseline "
                f"would skip the regression check: fix the alias, or give it to the version to compare "
                f"with (aicd model alias {ref.name} {ref.alias} VERSION)"
            )
        raise ConfigError(
            f"the baseline {ref} cannot be resolved: {missing}. A gate without its baseline would skip "
            "the regression check: name a version the model has"
        )

    def lineage(self, uri: ModelURI | str) -> VersionLineage:
        record = self.resolve(uri)
        return VersionLineage(record, self.store.pipeline_link(record))

    def versions_for_commit(self, sha: str) -> list[ModelVersionRecord]:
        text = sha.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{4,64}", text):
            raise ConfigError(f"commit {sha!r}: expected a commit SHA or a prefix of at least 4 hex digits")
        return self.store.versions_for_commit(text)

    def download(
        self, uri: ModelURI | str, output: Path, *, force: bool = False
    ) -> tuple[ModelVersionRecord, Path]:
        """Write the version's artifact into the folder `output` (a file, or the folder as registered)."""
        record = self.resolve(uri)
        if record.artifact_digest is None or record.artifact_name is None:
            raise NotFoundError(f"{record.uri} has no artifact")
        target = output / check_artifact_name(record.artifact_name).rstrip("/")
        path = self.objects.restore(
            record.artifact_digest, artifact_kind(record.artifact_name), target, force=force
        )
        return record, path


def local_location(cwd: Path, environ: Mapping[str, str] | None = None) -> tuple[Path, str]:
    """(home, database URL) of the registry for `cwd`: the same as `aicd run`'s."""
    from aicd.config import load_settings

    settings = load_settings(environ)
    home = settings.home_for(cwd.resolve())
    return home, settings.database_url_for(home)


def _new_version(
    obj: StoredObject,
    artifact_name: str,
    metrics: dict[str, float] | None,
    tags: dict[str, str] | None,
    dataset_hash: str | None,
    lineage: Lineage,
) -> NewVersion:
    return NewVersion(
        artifact_digest=obj.digest,
        artifact_name=artifact_name,
        artifact_size=obj.size,
        metrics=metrics,
        tags=tags,
        commit_sha=lineage.commit_sha,
        ref=lineage.ref,
        pipeline_id=lineage.pipeline_id,
        job_id=lineage.job_id,
        project=lineage.project,
        pipeline_url=lineage.pipeline_url,
        dataset_hash=dataset_hash,
        created_by=lineage.user,
    )


def _versions(last: int) -> str:
    return "version 1" if last == 1 else f"versions 1 to {last}"


def _user() -> str:
    return current_user(os.environ) or "local"
