"""Server (project settings, users, tokens, roles, audit, variables, webhook
deliveries, polled refs) and the model registry (models, versions, aliases).

Revision: 0002
Parent: 0001
Created: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen copies of the types in aicd.store.schema as they were at this revision.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
_FALSE = sa.false()


def _id() -> sa.Column[int]:
    return sa.Column("id", _ID, autoincrement=True, nullable=False)


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("name", sa.Text(), nullable=True))
        batch.add_column(sa.Column("repo_url", sa.Text(), nullable=True))
        batch.add_column(sa.Column("default_branch", sa.Text(), nullable=True))
        batch.add_column(sa.Column("pipeline_file", sa.Text(), nullable=True))
        batch.add_column(sa.Column("poll_interval_s", sa.Double(), nullable=True))
        batch.add_column(sa.Column("webhook_secret", sa.Text(), nullable=True))
        batch.create_unique_constraint("uq_projects_name", ["name"])
    op.create_table(
        "users",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("is_admin", sa.Boolean(), server_default=_FALSE, nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("name", name="uq_users_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "api_tokens",
        _id(),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=True),
        sa.Column("last_used_at", sa.Double(), nullable=True),
        sa.Column("revoked", sa.Boolean(), server_default=_FALSE, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_api_tokens_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "memberships",
        _id(),
        sa.Column("project_id", _ID, nullable=False),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_memberships_project_id_projects", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_memberships_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_memberships"),
        sa.UniqueConstraint("project_id", "user_id", name="uq_memberships_project_id_user_id"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "audit_log",
        _id(),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("project_id", _ID, nullable=True),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("details", _JSON, nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_audit_log_project_id_projects", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_log_project_id_id", "audit_log", ["project_id", "id"])
    op.create_table(
        "project_variables",
        _id(),
        sa.Column("project_id", _ID, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value_encrypted", sa.Text(), nullable=False),
        sa.Column("masked", sa.Boolean(), server_default=_FALSE, nullable=False),
        sa.Column("protected", sa.Boolean(), server_default=_FALSE, nullable=False),
        sa.Column("file", sa.Boolean(), server_default=_FALSE, nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name="fk_project_variables_project_id_projects",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_project_variables"),
        sa.UniqueConstraint("project_id", "key", name="uq_project_variables_project_id_key"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "webhook_deliveries",
        _id(),
        sa.Column("project_id", _ID, nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("delivery_id", sa.String(200), nullable=False),
        sa.Column("received_at", sa.Double(), nullable=False),
        sa.Column("pipeline_id", _ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name="fk_webhook_deliveries_project_id_projects",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.UniqueConstraint(
            "project_id",
            "provider",
            "delivery_id",
            name="uq_webhook_deliveries_project_id_provider_delivery_id",
        ),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "project_refs",
        _id(),
        sa.Column("project_id", _ID, nullable=False),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("sha", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_project_refs_project_id_projects", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_project_refs"),
        sa.UniqueConstraint("project_id", "ref", name="uq_project_refs_project_id_ref"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "models",
        _id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("last_version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("name", name="uq_models_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "model_versions",
        _id(),
        sa.Column("model_id", _ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("artifact_digest", sa.String(80), nullable=True),
        sa.Column("artifact_name", sa.Text(), nullable=True),
        sa.Column("artifact_size", sa.BigInteger(), nullable=True),
        sa.Column("metrics", _JSON, nullable=True),
        sa.Column("tags", _JSON, nullable=True),
        sa.Column("commit_sha", sa.String(64), nullable=True),
        sa.Column("ref", sa.Text(), nullable=True),
        sa.Column("pipeline_id", sa.BigInteger(), nullable=True),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("project", sa.Text(), nullable=True),
        sa.Column("pipeline_url", sa.Text(), nullable=True),
        sa.Column("dataset_hash", sa.String(80), nullable=True),
        sa.Column("created_by", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_model_versions_model_id_models", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_model_id_version"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_model_versions_commit_sha", "model_versions", ["commit_sha"])
    op.create_table(
        "model_aliases",
        _id(),
        sa.Column("model_id", _ID, nullable=False),
        sa.Column("alias", sa.String(100), nullable=False),
        sa.Column("version_id", _ID, nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_model_aliases_model_id_models", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.id"],
            name="fk_model_aliases_version_id_model_versions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_model_aliases"),
        sa.UniqueConstraint("model_id", "alias", name="uq_model_aliases_model_id_alias"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    for table in (
        "model_aliases",
        "model_versions",
        "models",
        "project_refs",
        "webhook_deliveries",
        "project_variables",
        "audit_log",
        "memberships",
        "api_tokens",
        "users",
    ):
        op.drop_table(table)
    with op.batch_alter_table("projects") as batch:
        batch.drop_constraint("uq_projects_name", type_="unique")
        for column in ("webhook_secret", "poll_interval_s", "pipeline_file", "default_branch", "repo_url"):
            batch.drop_column(column)
        for column in ("name",):
            batch.drop_column(column)
