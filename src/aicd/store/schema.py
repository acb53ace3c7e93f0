"""The tables, as SQLAlchemy Core objects: the one definition of the schema.

The repository works on these tables with Core statements (it never imports
``sqlalchemy.orm``, which costs tens of milliseconds at every CLI start);
:mod:`aicd.store.models` maps typed ORM classes onto the same tables, and
Alembic's autogenerate compares the migrations against :data:`metadata`.

A change here needs a new migration in ``migrations/versions/``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

# Named constraints, so that later migrations (SQLite batch mode included) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# 64-bit ids on PostgreSQL; INTEGER PRIMARY KEY (the rowid) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Json(TypeDecorator[Any]):
    """JSON text on SQLite, JSONB on PostgreSQL; Python None is SQL NULL.

    (A decorator rather than ``with_variant(JSONB)``: importing the PostgreSQL
    dialect costs ~25 ms, which SQLite users should not pay at every start.)
    """

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB(none_as_null=True))
        return dialect.type_descriptor(JSON(none_as_null=True))


Status = String(32)

# One row per project (today: a local directory). Holds the per-project pipeline
# counter (CI_PIPELINE_IID); the server will add name, repository URL, ... later.
projects = Table(
    "projects",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("path", Text, nullable=False),
    Column("last_pipeline_iid", Integer, nullable=False, server_default=text("0")),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("path"),
    sqlite_autoincrement=True,
)

pipelines = Table(
    "pipelines",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("project_id", Id, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("iid", Integer, nullable=False),
    Column("project_dir", Text, nullable=False),
    Column("ref", Text, nullable=False),
    Column("sha", String(64), nullable=False),
    Column("source", String(64), nullable=False),
    Column("file", Text, nullable=False),
    Column("status", Status, nullable=False),
    Column("name", Text, nullable=True),
    Column("variables", Json(), nullable=True),
    Column("created_at", Double, nullable=False),
    Column("started_at", Double, nullable=True),
    Column("finished_at", Double, nullable=True),
    Column("run_dir", Text, nullable=False),
    Column("error", Text, nullable=True),
    UniqueConstraint("project_id", "iid"),
    Index(None, "project_dir", "id"),
    sqlite_autoincrement=True,  # ids name run folders and logs: never reuse one
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("pipeline_id", Id, ForeignKey("pipelines.id", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False),
    Column("stage", Text, nullable=False),
    Column("status", Status, nullable=False),
    Column("when", String(32), nullable=False),
    Column("allow_failure", Boolean, nullable=False, server_default=false()),
    Column("attempt", Integer, nullable=False, server_default=text("1")),
    Column("retried", Boolean, nullable=False, server_default=false()),
    Column("exit_code", Integer, nullable=True),
    Column("failure_reason", Text, nullable=True),
    Column("created_at", Double, nullable=True),
    Column("started_at", Double, nullable=True),
    Column("finished_at", Double, nullable=True),
    Column("log_path", Text, nullable=True),
    Column("artifacts_dir", Text, nullable=True),
    Column("tests_total", Integer, nullable=True),
    Column("tests_passed", Integer, nullable=True),
    Column("tests_failed", Integer, nullable=True),
    Column("tests_skipped", Integer, nullable=True),
    Column("coverage", Double, nullable=True),
    Column("metrics", Json(), nullable=True),
    Index(None, "pipeline_id", "id"),
    sqlite_autoincrement=True,
)

# -- server: projects' settings, accounts, access, audit, secrets, triggers (revision 0002) --------
# Server projects are rows of `projects` with a name; their `path` is "server:<name>".
projects.append_column(Column("name", Text, nullable=True))
projects.append_column(Column("repo_url", Text, nullable=True))
projects.append_column(Column("default_branch", Text, nullable=True))
projects.append_column(Column("pipeline_file", Text, nullable=True))
projects.append_column(Column("poll_interval_s", Double, nullable=True))  # None: no polling
projects.append_column(Column("webhook_secret", Text, nullable=True))  # encrypted (aicd.core.secrets)
projects.append_constraint(UniqueConstraint("name"))

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("is_admin", Boolean, nullable=False, server_default=false()),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("name"),
    sqlite_autoincrement=True,
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("token_hash", String(64), nullable=False),  # sha256 hex; the token itself is never kept
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=True),
    Column("last_used_at", Double, nullable=True),
    Column("revoked", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("token_hash"),
    sqlite_autoincrement=True,
)

# -- job tokens (revision 0004) ---------------------------------------------------------------------
# CI_JOB_TOKEN of one job attempt: its SHA-256 only, bound to the attempt (job row) and its project,
# valid until it expires (the job's timeout and a margin) or is revoked (the attempt ended).
job_tokens = Table(
    "job_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False),
    Column("project_id", Id, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("pipeline_id", Id, nullable=False),
    Column("job_id", Id, nullable=False),  # the attempt's row in `jobs` (CI_JOB_ID)
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("revoked_at", Double, nullable=True),
    Column("user_login", Text, nullable=True),  # who started the pipeline (GITLAB_USER_LOGIN)
    # the pipeline's ref is protected (default branch, tag): its jobs may move protected aliases
    Column("protected_ref", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("token_hash"),
    Index(None, "job_id"),
    sqlite_autoincrement=True,
)

# -- runners (revision 0005) -----------------------------------------------------------------------
# A runner is a registered `aicd worker`: its token by its SHA-256 only, the tags it serves, and what
# it last told the server (when, its version and host): "online" means contacted in the last minute.
runners = Table(
    "runners",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("tags", Json(), nullable=False),  # sorted list of tag names
    Column("run_untagged", Boolean, nullable=False, server_default=false()),
    Column("paused", Boolean, nullable=False, server_default=false()),
    Column("created_at", Double, nullable=False),
    Column("created_by", Text, nullable=True),  # the admin who registered it
    Column("contacted_at", Double, nullable=True),
    Column("version", Text, nullable=True),  # what the worker said it runs (aicd's version)
    Column("host", Text, nullable=True),  # the worker's host name, as it said
    UniqueConstraint("token_hash"),
    sqlite_autoincrement=True,
)

# -- job leases (revision 0006) --------------------------------------------------------------------
# A job attempt a worker claimed through the broker: which runner runs it, and until when its lease
# holds (each heartbeat moves it on). The attempt id is the fencing token: one claim per attempt.
job_leases = Table(
    "job_leases",
    metadata,
    Column("job_id", Id, primary_key=True, autoincrement=False),  # the attempt's row in `jobs`
    Column("runner_id", Id, nullable=False),  # no foreign key: a deleted runner's leases stay readable
    Column("claimed_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("ended_at", Double, nullable=True),
    Column("end", String(32), nullable=True),  # finished, canceled, lease_expired, abandoned
)

memberships = Table(
    "memberships",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("project_id", Id, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("role", String(16), nullable=False),  # viewer, developer, maintainer
    UniqueConstraint("project_id", "user_id"),
    sqlite_autoincrement=True,
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("actor", Text, nullable=False),  # user name, "webhook:github", "poller", "system"
    Column("action", String(64), nullable=False),  # e.g. project.create, pipeline.cancel, variable.set
    Column("project_id", Id, ForeignKey("projects.id", ondelete="SET NULL"), nullable=True),
    Column("target", Text, nullable=True),
    Column("details", Json(), nullable=True),  # never holds a secret value
    Index(None, "project_id", "id"),
    sqlite_autoincrement=True,
)

project_variables = Table(
    "project_variables",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("project_id", Id, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(255), nullable=False),
    Column("value_encrypted", Text, nullable=False),  # always encrypted at rest
    Column("masked", Boolean, nullable=False, server_default=false()),
    Column("protected", Boolean, nullable=False, server_default=false()),  # only for protected refs
    Column("file", Boolean, nullable=False, server_default=false()),  # a file variable
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    UniqueConstraint("project_id", "key"),
    sqlite_autoincrement=True,
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("project_id", Id, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("provider", String(16), nullable=False),  # github, gitlab, gitea
    Column("delivery_id", String(200), nullable=False),  # the provider's id, or a hash of the body
    Column("received_at", Double, nullable=False),
    Column("pipeline_id", Id, nullable=True),
    UniqueConstraint("project_id", "provider", "delivery_id"),
    sqlite_autoincrement=True,
)

# What the poller (or a webhook) last saw on each branch and tag.
project_refs = Table(
    "project_refs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("project_id", Id, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("ref", Text, nullable=False),  # refs/heads/main, refs/tags/v1
    Column("sha", String(64), nullable=False),
    Column("updated_at", Double, nullable=False),
    UniqueConstraint("project_id", "ref"),
    sqlite_autoincrement=True,
)

# -- model registry (revision 0002) ----------------------------------------------------------------
models = Table(
    "models",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=True),
    Column("last_version", Integer, nullable=False, server_default=text("0")),  # gapless numbering
    Column("created_at", Double, nullable=False),
    UniqueConstraint("name"),
    sqlite_autoincrement=True,
)
# The server project a model belongs to (revision 0004); None: the local registry, or an admin's.
# No foreign key (adding one would rebuild the table on SQLite): a removed project's id dangles.
models.append_column(Column("project_id", Id, nullable=True))
models.append_constraint(Index(None, "project_id"))
# Aliases only maintainers move or delete (None: the default, ["production"]) (revision 0004).
projects.append_column(Column("protected_aliases", Json(), nullable=True))

# Project `reader_project_id` may read the models of project `project_id` (revision 0004).
model_readers = Table(
    "model_readers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("project_id", Id, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("reader_project_id", Id, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("project_id", "reader_project_id"),
    sqlite_autoincrement=True,
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("model_id", Id, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("artifact_digest", String(80), nullable=True),  # "sha256:<hex>" of the stored object
    Column("artifact_name", Text, nullable=True),  # file or folder name as registered
    Column("artifact_size", BigInteger, nullable=True),
    Column("metrics", Json(), nullable=True),
    Column("tags", Json(), nullable=True),
    Column("commit_sha", String(64), nullable=True),
    Column("ref", Text, nullable=True),
    Column("pipeline_id", BigInteger, nullable=True),  # CI_PIPELINE_ID (no foreign key: may be another CI)
    Column("job_id", BigInteger, nullable=True),  # CI_JOB_ID
    Column("project", Text, nullable=True),  # CI_PROJECT_PATH / dir / URL
    Column("pipeline_url", Text, nullable=True),
    Column("dataset_hash", String(80), nullable=True),
    Column("created_by", Text, nullable=True),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("model_id", "version"),
    Index(None, "commit_sha"),
    sqlite_autoincrement=True,
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("model_id", Id, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("alias", String(100), nullable=False),
    Column("version_id", Id, ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=False),
    Column("updated_at", Double, nullable=False),
    UniqueConstraint("model_id", "alias"),
    sqlite_autoincrement=True,
)

# -- deployments (revision 0003) -------------------------------------------------------------------
# An environment is named per scope: "" for a local project, the project's path on a server.
environments = Table(
    "environments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("scope", String(255), nullable=False, server_default=text("''")),
    Column("name", String(100), nullable=False),
    Column("tier", String(32), nullable=True),  # production, staging, testing, development, other
    # idle, deploying, paused, healthy, degraded, down, stopped
    Column("status", Status, nullable=False, server_default=text("'idle'")),
    Column("url", Text, nullable=True),  # the router's address
    Column("router_port", Integer, nullable=True),
    Column("stable_revision", String(64), nullable=True),
    Column("canary_revision", String(64), nullable=True),
    Column("weights", Json(), nullable=True),  # {revision: weight}
    Column("agent_pid", Integer, nullable=True),
    Column("state_dir", Text, nullable=True),
    Column("last_revision", Integer, nullable=False, server_default=text("0")),  # gapless numbering
    Column("last_deployment", Integer, nullable=False, server_default=text("0")),  # gapless numbering
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    UniqueConstraint("scope", "name"),
    sqlite_autoincrement=True,
)

# One release of the service in an environment: "r1", "r2", ... (its processes, its ports).
revisions = Table(
    "revisions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("environment_id", Id, ForeignKey("environments.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("number", Integer, nullable=False),
    Column("release_dir", Text, nullable=False),
    Column("spec", Json(), nullable=False),  # ServiceSpec.to_json()
    Column("commit_sha", String(64), nullable=True),
    Column("ref", Text, nullable=True),
    Column("pipeline_id", Text, nullable=True),  # CI_PIPELINE_ID (may be another CI's)
    Column("job_id", Text, nullable=True),
    Column("model_version", Text, nullable=True),  # e.g. models:/iris/3
    Column("ports", Json(), nullable=True),  # list[int]
    Column("status", Status, nullable=False),  # starting, running, stopped, failed
    Column("created_at", Double, nullable=False),
    Column("stopped_at", Double, nullable=True),
    UniqueConstraint("environment_id", "name"),
    sqlite_autoincrement=True,
)

deployments = Table(
    "deployments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("environment_id", Id, ForeignKey("environments.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("revision", String(64), nullable=False),
    Column("previous_revision", String(64), nullable=True),
    Column("strategy", String(16), nullable=False),  # recreate, blue-green, canary, rollback
    # running, paused, succeeded, failed, aborted, rolled_back, rejected
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("commit_sha", String(64), nullable=True),
    Column("commit_at", Double, nullable=True),  # commit time (DORA lead time)
    Column("ref", Text, nullable=True),
    Column("pipeline_id", Text, nullable=True),
    Column("job_id", Text, nullable=True),
    Column("pipeline_url", Text, nullable=True),
    Column("actor", Text, nullable=False),
    Column("started_at", Double, nullable=False),
    Column("finished_at", Double, nullable=True),
    Column("analysis", Json(), nullable=True),
    UniqueConstraint("environment_id", "number"),
    Index(None, "environment_id", "started_at"),
    sqlite_autoincrement=True,
)

deploy_events = Table(
    "deploy_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("environment_id", Id, ForeignKey("environments.id", ondelete="CASCADE"), nullable=False),
    Column("deployment_id", Id, ForeignKey("deployments.id", ondelete="SET NULL"), nullable=True),
    Column("at", Double, nullable=False),
    Column("kind", String(64), nullable=False),  # deployment.started, weight.set, instance.crashed, ...
    Column("revision", String(64), nullable=True),
    Column("message", Text, nullable=False),
    Column("data", Json(), nullable=True),
    Column("actor", Text, nullable=False),
    Index(None, "environment_id", "id"),
    sqlite_autoincrement=True,
)

incidents = Table(
    "incidents",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("environment_id", Id, ForeignKey("environments.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),  # down, slo, change_failure, declared
    Column("title", Text, nullable=False),
    Column("opened_at", Double, nullable=False),
    Column("resolved_at", Double, nullable=True),
    Column("deployment_id", Id, ForeignKey("deployments.id", ondelete="SET NULL"), nullable=True),
    Column("cause", Text, nullable=True),
    Column("resolution", Text, nullable=True),
    Column("data", Json(), nullable=True),
    Column("opened_by", Text, nullable=False),
    Column("resolved_by", Text, nullable=True),
    Index(None, "environment_id", "opened_at"),
    sqlite_autoincrement=True,
)
