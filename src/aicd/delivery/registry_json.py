"""The registry's records as JSON objects: one shape for `aicd model --json` and the HTTP API."""

from __future__ import annotations

from typing import Any

from aicd.delivery.objects import KIND_DIR, KIND_FILE
from aicd.store.registry import AliasEvent, AliasRecord, ModelRecord, ModelVersionRecord, PipelineLink


def model_json(record: ModelRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "description": record.description,
        "latest_version": record.last_version or None,
        "aliases": dict(record.aliases),
        "created_at": record.created_at,
    }


def pipeline_json(link: PipelineLink | None) -> dict[str, Any] | None:
    if link is None:
        return None
    return {
        "id": link.pipeline_id,
        "iid": link.iid,
        "status": link.status,
        "ref": link.ref,
        "sha": link.sha,
        "project_dir": link.project_dir,
        "created_at": link.created_at,
        "job": None if link.job_name is None else {"name": link.job_name, "status": link.job_status},
    }


def version_json(record: ModelVersionRecord, link: PipelineLink | None = None) -> dict[str, Any]:
    """A version; `pipeline` is the run of this database it came from (when known)."""
    artifact = None
    if record.artifact_digest is not None:
        name = record.artifact_name or ""
        artifact = {
            "name": name,
            "kind": KIND_DIR if name.endswith("/") else KIND_FILE,
            "digest": record.artifact_digest,
            "size": record.artifact_size,
        }
    return {
        "model": record.model,
        "version": record.version,
        "uri": record.uri,
        "aliases": list(record.aliases),
        "artifact": artifact,
        "metrics": record.metrics,
        "tags": record.tags,
        "lineage": {
            "commit": record.commit_sha,
            "ref": record.ref,
            "pipeline_id": record.pipeline_id,
            "job_id": record.job_id,
            "project": record.project,
            "pipeline_url": record.pipeline_url,
            "dataset_hash": record.dataset_hash,
            "created_by": record.created_by,
        },
        "created_at": record.created_at,
        "pipeline": pipeline_json(link),
    }


def alias_json(record: AliasRecord, previous: int | None = None) -> dict[str, Any]:
    return {
        "model": record.model,
        "alias": record.alias,
        "version": record.version,
        "uri": f"models:/{record.model}@{record.alias}",
        "updated_at": record.updated_at,
        "previous": previous,
    }


def alias_event_json(event: AliasEvent) -> dict[str, Any]:
    return {
        "at": event.at,
        "actor": event.actor,
        "action": event.action,
        "alias": event.alias,
        "version": event.version,
        "previous": event.previous,
    }
