"""Where `aicd model` works: the local registry, or an aicd server (--server). Both answer with
the same JSON objects (aicd.delivery.registry_json), so the command draws them one way."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aicd.delivery.lineage import Lineage
from aicd.delivery.model_uri import ModelURI, check_alias, check_name, check_version
from aicd.errors import AicdError, ConfigError

Json = dict[str, Any]


@dataclass(frozen=True)
class RegisterRequest:
    name: str
    path: Path
    metrics: Path | None = None
    metrics_display: str | None = None
    tags: dict[str, str] | None = None
    dataset: Path | None = None
    dataset_hash: str | None = None
    description: str | None = None
    alias: str | None = None
    project: str | None = None  # a server project, for a new model


class Backend(Protocol):
    def register(self, request: RegisterRequest) -> Json: ...
    def list_models(self) -> list[Json]: ...
    def list_versions(self, name: str) -> list[Json]: ...
    def show(self, ref: ModelURI) -> Json: ...
    def set_alias(self, name: str, alias: str, version: int) -> Json: ...
    def delete_alias(self, name: str, alias: str) -> Json: ...
    def history(self, name: str, alias: str | None) -> list[Json]: ...
    def commit_versions(self, sha: str) -> list[Json]: ...
    def download(self, ref: ModelURI, output: Path, force: bool) -> tuple[Json, Path]: ...
    def close(self) -> None: ...


@contextmanager
def open_backend(cwd: Path, server: str | None, token: str | None) -> Iterator[Backend]:
    backend: Backend = RemoteBackend(server, token, cwd) if server else LocalBackend(cwd)
    try:
        yield backend
    finally:
        backend.close()


# -- local -----------------------------------------------------------------------------------------


class LocalBackend:
    def __init__(self, cwd: Path) -> None:
        from aicd.delivery.registry import Registry

        self.cwd = cwd
        self.registry = Registry.open_local(cwd)

    def close(self) -> None:
        self.registry.close()

    def register(self, request: RegisterRequest) -> Json:
        from aicd.delivery.registry_json import version_json

        record = self.registry.register(
            request.name,
            request.path,
            metrics=request.metrics,
            metrics_display=request.metrics_display,
            tags=request.tags,
            dataset=request.dataset,
            dataset_hash=request.dataset_hash,
            description=request.description,
            alias=request.alias,
            lineage=Lineage.from_env(os.environ, self.cwd),
        )
        return version_json(record)

    def list_models(self) -> list[Json]:
        from aicd.delivery.registry_json import model_json

        return [model_json(m) for m in self.registry.store.list_models()]

    def list_versions(self, name: str) -> list[Json]:
        from aicd.delivery.registry_json import version_json

        return [version_json(v) for v in self.registry.store.list_versions(check_name(name))]

    def show(self, ref: ModelURI) -> Json:
        from aicd.delivery.registry_json import version_json

        found = self.registry.lineage(ref)
        return version_json(found.version, found.pipeline)

    def set_alias(self, name: str, alias: str, version: int) -> Json:
        from aicd.delivery.registry_json import alias_json

        record, previous = self.registry.set_alias(name, alias, version)
        return alias_json(record, previous)

    def delete_alias(self, name: str, alias: str) -> Json:
        from aicd.delivery.registry_json import alias_json

        return alias_json(self.registry.remove_alias(name, alias))

    def history(self, name: str, alias: str | None) -> list[Json]:
        from aicd.delivery.registry_json import alias_event_json

        self.registry.store.get_model(check_name(name))  # NotFoundError for an unknown model
        return [alias_event_json(e) for e in self.registry.store.alias_history(name, alias)]

    def commit_versions(self, sha: str) -> list[Json]:
        from aicd.delivery.registry_json import version_json

        return [version_json(v) for v in self.registry.versions_for_commit(sha)]

    def download(self, ref: ModelURI, output: Path, force: bool) -> tuple[Json, Path]:
        from aicd.delivery.registry_json import version_json

        record, path = self.registry.download(ref, output, force=force)
        return version_json(record), path


# -- remote ----------------------------------------------------------------------------------------


class RemoteBackend:
    """The same operations through the server's /api/v1/models routes."""

    def __init__(self, server: str | None, token: str | None, cwd: Path) -> None:
        from aicd.cli.remote import Client

        self.cwd = cwd
        self.client = Client(server, token)

    def close(self) -> None:
        self.client.close()

    def register(self, request: RegisterRequest) -> Json:
        from aicd.delivery.objects import dataset_digest
        from aicd.delivery.registry import check_dataset_hash, check_metrics

        check_name(request.name)
        if request.alias is not None:
            check_alias(request.alias)
        if request.dataset is not None and request.dataset_hash is not None:
            raise ConfigError("give the data set as a path or as a hash, not both")
        metrics = None
        if request.metrics is not None:
            from aicd.delivery.metrics_file import read_metrics_file

            shown = request.metrics_display or str(request.metrics)
            metrics = check_metrics(read_metrics_file(request.metrics, shown), shown)
        dataset_hash = request.dataset_hash
        if request.dataset is not None:
            dataset_hash = dataset_digest(request.dataset)
        elif dataset_hash is not None:
            dataset_hash = check_dataset_hash(dataset_hash)
        if not request.path.exists():
            raise ConfigError(f"{request.path}: no such model file or folder")
        lineage = Lineage.from_env(os.environ, self.cwd)
        with _artifact_file(request.path) as (file, name):
            digest, size = _digest(file)
            self._upload(file, digest)
        body = {
            "artifact": {"digest": digest, "name": name, "size": size},
            "metrics": metrics,
            "tags": request.tags,
            "dataset_hash": dataset_hash,
            "description": request.description,
            "alias": request.alias,
            "project": request.project,
            # a job token's lineage is the server's own records; this is a user's claim
            "lineage": {
                "commit": lineage.commit_sha,
                "ref": lineage.ref,
                "pipeline_id": lineage.pipeline_id,
                "job_id": lineage.job_id,
                "project": lineage.project,
                "pipeline_url": lineage.pipeline_url,
            },
        }
        return dict(self.client.post(f"/models/{request.name}/versions", json=body))

    def _upload(self, file: Path, digest: str) -> None:
        import httpx

        from aicd.cli.remote import check

        try:
            with file.open("rb") as fh:
                response = self.client._http.put(
                    f"/objects/{digest}", content=fh, headers={"Content-Type": "application/octet-stream"}
                )
        except httpx.HTTPError as exc:
            raise AicdError(
                f"cannot upload the model to {self.client.server}: {exc or type(exc).__name__}"
            ) from None
        check(response)

    def list_models(self) -> list[Json]:
        return list(self.client.get("/models"))

    def list_versions(self, name: str) -> list[Json]:
        return list(self.client.get(f"/models/{check_name(name)}/versions"))

    def show(self, ref: ModelURI) -> Json:
        if ref.alias is not None:
            return dict(self.client.get(f"/models/{ref.name}/aliases/{ref.alias}"))
        version = "latest" if ref.version is None else str(ref.version)
        return dict(self.client.get(f"/models/{ref.name}/versions/{version}"))

    def set_alias(self, name: str, alias: str, version: int) -> Json:
        path = f"/models/{check_name(name)}/aliases/{check_alias(alias)}"
        return dict(self.client.put(path, json={"version": check_version(version)}))

    def delete_alias(self, name: str, alias: str) -> Json:
        return dict(self.client.delete(f"/models/{check_name(name)}/aliases/{check_alias(alias)}"))

    def history(self, name: str, alias: str | None) -> list[Json]:
        return list(self.client.get(f"/models/{check_name(name)}/history", params={"alias": alias}))

    def commit_versions(self, sha: str) -> list[Json]:
        return list(self.client.get(f"/lineage/commits/{sha.strip()}"))

    def download(self, ref: ModelURI, output: Path, force: bool) -> tuple[Json, Path]:
        import httpx

        from aicd.cli.remote import check
        from aicd.delivery.objects import restore_from
        from aicd.delivery.registry import artifact_kind, check_artifact_name

        version = self.show(ref)
        artifact = version.get("artifact")
        if not artifact:
            raise AicdError(f"{version.get('uri')} has no artifact")
        name = check_artifact_name(str(artifact["name"]))
        target = output / name.rstrip("/")
        if (target.exists() or target.is_symlink()) and not force:
            raise ConfigError(f"{target} exists already: remove it, choose another --output, or use --force")
        path = f"/models/{version['model']}/versions/{version['version']}/artifact"
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".aicd-download-", dir=output) as tmp:
            blob = Path(tmp) / "object"
            h = hashlib.sha256()
            try:
                with self.client._http.stream("GET", path) as response:
                    if response.status_code >= 400:
                        response.read()
                        check(response)
                    with blob.open("wb") as fh:
                        for chunk in response.iter_bytes():
                            h.update(chunk)
                            fh.write(chunk)
            except httpx.HTTPError as exc:
                raise AicdError(
                    f"cannot download from {self.client.server}: {exc or type(exc).__name__}"
                ) from None
            actual = f"sha256:{h.hexdigest()}"
            if actual != artifact["digest"]:
                raise AicdError(
                    f"the downloaded artifact of {version['uri']} has digest {actual}, "
                    f"not {artifact['digest']}: it was damaged on the way; nothing was written"
                )
            written = restore_from(blob, artifact_kind(name), target, force=force)
        return version, written


@contextmanager
def _artifact_file(path: Path) -> Iterator[tuple[Path, str]]:
    """The bytes to upload (the file, or a deterministic tar of the folder) and the artifact name."""
    from aicd.delivery.objects import write_tar

    name = path.resolve().name or "artifact"
    if not path.is_dir():
        yield path, name
        return
    with tempfile.TemporaryDirectory(prefix="aicd-upload-") as tmp:
        tar = Path(tmp) / "artifact.tar"
        with tar.open("w+b") as fh:
            write_tar(path, fh)
        yield tar, f"{name}/"


def _digest(path: Path) -> tuple[str, int]:
    from aicd.delivery.objects import digest_file

    try:
        obj = digest_file(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the model artifact: {exc.strerror or exc}") from None
    return obj.digest, obj.size
