"""Deployments: environments, their revisions, deployments, deploy events and incidents.

Revision: 0003
Parent: 0002
Created: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen copies of the types in aicd.store.schema as they were at this revision.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _id() -> sa.Column[int]:
    return sa.Column("id", _ID, autoincrement=True, nullable=False)


def _environment_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["environment_id"],
        ["environments.id"],
        name=f"fk_{table}_environment_id_environments",
        ondelete="CASCADE",
    )


def _deployment_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["deployment_id"],
        ["deployments.id"],
        name=f"fk_{table}_deployment_id_deployments",
        ondelete="SET NULL",
    )


def upgrade() -> None:
    op.create_table(
        "environments",
        _id(),
        sa.Column("scope", sa.String(255), server_default=sa.text("''"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("tier", sa.String(32), nullable=True),
        sa.Column("status", sa.String(32), server_default=sa.text("'idle'"), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("router_port", sa.Integer(), nullable=True),
        sa.Column("stable_revision", sa.String(64), nullable=True),
        sa.Column("canary_revision", sa.String(64), nullable=True),
        sa.Column("weights", _JSON, nullable=True),
        sa.Column("agent_pid", sa.Integer(), nullable=True),
        sa.Column("state_dir", sa.Text(), nullable=True),
        sa.Column("last_revision", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_deployment", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_environments"),
        sa.UniqueConstraint("scope", "name", name="uq_environments_scope_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "revisions",
        _id(),
        sa.Column("environment_id", _ID, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("release_dir", sa.Text(), nullable=False),
        sa.Column("spec", _JSON, nullable=False),
        sa.Column("commit_sha", sa.String(64), nullable=True),
        sa.Column("ref", sa.Text(), nullable=True),
        sa.Column("pipeline_id", sa.Text(), nullable=True),
        sa.Column("job_id", sa.Text(), nullable=True),
        sa.Column("model_version", sa.Text(), nullable=True),
        sa.Column("ports", _JSON, nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("stopped_at", sa.Double(), nullable=True),
        _environment_fk("revisions"),
        sa.PrimaryKeyConstraint("id", name="pk_revisions"),
        sa.UniqueConstraint("environment_id", "name", name="uq_revisions_environment_id_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "deployments",
        _id(),
        sa.Column("environment_id", _ID, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("revision", sa.String(64), nullable=False),
        sa.Column("previous_revision", sa.String(64), nullable=True),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("commit_sha", sa.String(64), nullable=True),
        sa.Column("commit_at", sa.Double(), nullable=True),
        sa.Column("ref", sa.Text(), nullable=True),
        sa.Column("pipeline_id", sa.Text(), nullable=True),
        sa.Column("job_id", sa.Text(), nullable=True),
        sa.Column("pipeline_url", sa.Text(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.Column("analysis", _JSON, nullable=True),
        _environment_fk("deployments"),
        sa.PrimaryKeyConstraint("id", name="pk_deployments"),
        sa.UniqueConstraint("environment_id", "number", name="uq_deployments_environment_id_number"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_deployments_environment_id_started_at", "deployments", ["environment_id", "started_at"]
    )
    op.create_table(
        "deploy_events",
        _id(),
        sa.Column("environment_id", _ID, nullable=False),
        sa.Column("deployment_id", _ID, nullable=True),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("revision", sa.String(64), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", _JSON, nullable=True),
        sa.Column("actor", sa.Text(), nullable=False),
        _environment_fk("deploy_events"),
        _deployment_fk("deploy_events"),
        sa.PrimaryKeyConstraint("id", name="pk_deploy_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_deploy_events_environment_id_id", "deploy_events", ["environment_id", "id"])
    op.create_table(
        "incidents",
        _id(),
        sa.Column("environment_id", _ID, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("opened_at", sa.Double(), nullable=False),
        sa.Column("resolved_at", sa.Double(), nullable=True),
        sa.Column("deployment_id", _ID, nullable=True),
        sa.Column("cause", sa.Text(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("data", _JSON, nullable=True),
        sa.Column("opened_by", sa.Text(), nullable=False),
        sa.Column("resolved_by", sa.Text(), nullable=True),
        _environment_fk("incidents"),
        _deployment_fk("incidents"),
        sa.PrimaryKeyConstraint("id", name="pk_incidents"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_incidents_environment_id_opened_at", "incidents", ["environment_id", "opened_at"])


def downgrade() -> None:
    op.drop_index("ix_incidents_environment_id_opened_at", table_name="incidents")
    op.drop_index("ix_deploy_events_environment_id_id", table_name="deploy_events")
    op.drop_index("ix_deployments_environment_id_started_at", table_name="deployments")
    for table in ("incidents", "deploy_events", "deployments", "revisions", "environments"):
        op.drop_table(table)
