"""Job leases: which runner runs a job attempt taken from the broker, and until when its lease holds.

Revision: 0006
Parent: 0005
Created: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Frozen copies of the types in aicd.store.schema as they were at this revision.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "job_leases",
        sa.Column("job_id", _ID, autoincrement=False, nullable=False),
        sa.Column("runner_id", _ID, nullable=False),
        sa.Column("claimed_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("ended_at", sa.Double(), nullable=True),
        sa.Column("end", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("job_id", name="pk_job_leases"),
    )


def downgrade() -> None:
    op.drop_table("job_leases")
