"""Job tokens, and the model registry by project: a model's owning project, the protected
aliases of a project, and cross-project read grants.

Revision: 0004
Parent: 0003
Created: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Frozen copies of the types in aicd.store.schema as they were at this revision.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _id() -> sa.Column[int]:
    return sa.Column("id", _ID, autoincrement=True, nullable=False)


def upgrade() -> None:
    op.create_table(
        "job_tokens",
        _id(),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("project_id", _ID, nullable=False),
        sa.Column("pipeline_id", _ID, nullable=False),
        sa.Column("job_id", _ID, nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.Column("user_login", sa.Text(), nullable=True),
        sa.Column("protected_ref", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_job_tokens_project_id_projects", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_job_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_job_tokens_token_hash"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_job_tokens_job_id", "job_tokens", ["job_id"])
    op.create_table(
        "model_readers",
        _id(),
        sa.Column("project_id", _ID, nullable=False),
        sa.Column("reader_project_id", _ID, nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_model_readers_project_id_projects", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["reader_project_id"],
            ["projects.id"],
            name="fk_model_readers_reader_project_id_projects",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_model_readers"),
        sa.UniqueConstraint(
            "project_id", "reader_project_id", name="uq_model_readers_project_id_reader_project_id"
        ),
        sqlite_autoincrement=True,
    )
    # Plain ADD COLUMN (no table rebuild: on SQLite, rebuilding `projects` or `models` would
    # cascade-delete their pipelines and versions). No foreign key for the same reason: a model
    # whose project was removed keeps a dangling id, which the server treats as "no project".
    op.add_column("projects", sa.Column("protected_aliases", _JSON, nullable=True))
    op.add_column("models", sa.Column("project_id", _ID, nullable=True))
    op.create_index("ix_models_project_id", "models", ["project_id"])
    # Models registered before models had owners: the server project named by their first
    # version's lineage (a server job's CI_PROJECT_PATH is the project's name), if there is one.
    op.execute(
        sa.text(
            "UPDATE models SET project_id = ("
            " SELECT p.id FROM model_versions v JOIN projects p ON p.name = v.project"
            " WHERE v.model_id = models.id AND p.path = 'server:' || p.name"
            " ORDER BY v.version LIMIT 1)"
        )
    )


def downgrade() -> None:
    op.drop_index("ix_models_project_id", table_name="models")
    op.drop_column("models", "project_id")
    op.drop_column("projects", "protected_aliases")
    op.drop_table("model_readers")
    op.drop_index("ix_job_tokens_job_id", table_name="job_tokens")
    op.drop_table("job_tokens")
