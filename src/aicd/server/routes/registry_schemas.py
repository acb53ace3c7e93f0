"""Request and response bodies of the model registry's routes (aicd.server.routes.models).

The responses have the shape of aicd.delivery.registry_json (what `aicd model --json` prints).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from aicd.delivery.lineage import Lineage
from aicd.delivery.model_uri import MAX_VERSION
from aicd.store.records import MAX_ID


class ModelOut(BaseModel):
    name: str
    description: str | None
    latest_version: int | None = Field(description="The newest version number; null before the first")
    aliases: dict[str, int] = Field(description="alias -> version")
    created_at: float
    project: str | None = Field(
        default=None, description="The project the model belongs to (null: none; only admins change it)"
    )


class ArtifactOut(BaseModel):
    name: str = Field(description="File name, or folder name ending in '/'")
    kind: Literal["file", "dir"]
    digest: str = Field(description="sha256:<hex> of the stored object (a folder: of its tar)")
    size: int | None


class LineageOut(BaseModel):
    commit: str | None
    ref: str | None
    pipeline_id: int | None
    job_id: int | None
    project: str | None
    pipeline_url: str | None
    dataset_hash: str | None
    created_by: str | None


class JobLinkOut(BaseModel):
    name: str
    status: str | None


class PipelineLinkOut(BaseModel):
    id: int
    iid: int
    status: str
    ref: str
    sha: str
    project_dir: str
    created_at: float
    job: JobLinkOut | None


class VersionOut(BaseModel):
    model: str
    version: int
    uri: str
    aliases: list[str]
    artifact: ArtifactOut | None
    metrics: dict[str, float] | None
    tags: dict[str, str] | None
    lineage: LineageOut
    created_at: float
    pipeline: PipelineLinkOut | None = Field(
        default=None, description="The pipeline of this server the version came from, when it is one"
    )


class AliasOut(BaseModel):
    model: str
    alias: str
    version: int
    uri: str
    updated_at: float
    previous: int | None = Field(default=None, description="The version it pointed at before this change")


class AliasEventOut(BaseModel):
    at: float
    actor: str
    action: str
    alias: str
    version: int | None = Field(description="Where it points afterwards; null: removed")
    previous: int | None


class AliasIn(BaseModel):
    version: int = Field(ge=1, le=MAX_VERSION, description="The version the alias points at")


class ObjectOut(BaseModel):
    digest: str
    size: int


class ArtifactIn(BaseModel):
    digest: str = Field(
        pattern=r"^sha256:[0-9a-f]{64}$", description="An object uploaded with PUT /objects/{digest}"
    )
    name: str = Field(min_length=1, max_length=256, description="File name, or folder name ending in '/'")
    size: int | None = Field(default=None, ge=0, description="Informative: the server uses the object's size")


class LineageIn(BaseModel):
    commit: str | None = Field(default=None, max_length=64, pattern=r"^[0-9a-fA-F]*$")
    ref: str | None = Field(default=None, max_length=1000)
    pipeline_id: int | None = Field(default=None, ge=0, le=MAX_ID)
    job_id: int | None = Field(default=None, ge=0, le=MAX_ID)
    project: str | None = Field(default=None, max_length=2000)
    pipeline_url: str | None = Field(default=None, max_length=2000)

    def lineage(self, user: str) -> Lineage:
        return Lineage(
            commit_sha=self.commit.lower() if self.commit else None,
            ref=self.ref,
            pipeline_id=self.pipeline_id,
            job_id=self.job_id,
            project=self.project,
            pipeline_url=self.pipeline_url,
            user=user,
        )


class VersionIn(BaseModel):
    artifact: ArtifactIn
    metrics: dict[str, Any] | None = Field(default=None, description="name -> finite number")
    tags: dict[str, Any] | None = None
    dataset_hash: str | None = None
    description: str | None = Field(default=None, max_length=10000)
    alias: str | None = Field(default=None, description="Point this alias at the new version too")
    lineage: LineageIn = Field(
        default_factory=LineageIn,
        description="Where the version came from (ignored for a job token: the server writes it)",
    )
    project: str | None = Field(
        default=None,
        max_length=200,
        description="A new model's project (name or id); by default the caller's only project "
        "with the developer role (a job token: its job's project)",
    )


class ModelPatch(BaseModel):
    project: str | None = Field(
        max_length=200, description="The project the model now belongs to (name or id); null: none"
    )


class ProtectedAliasesIn(BaseModel):
    aliases: list[str] = Field(max_length=100, description="Aliases only maintainers move or remove")


class ProtectedAliasesOut(BaseModel):
    project: str
    aliases: list[str]


class ModelReadersOut(BaseModel):
    project: str
    readers: list[str] = Field(description="Projects that may read this project's models")
