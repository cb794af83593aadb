"""engine fences and attempts

The job engine: a fencing token per job (every message carries it; a stale one does nothing), the
admission count that names the slot holder, the priority class, the run budget counted from
admission with the state's own deadline in deadline_at, back-off and attempt counters, and one
row per vendor call that may create a task (vendor_attempts), written before the call.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fence", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("attempt", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("priority", sa.String(length=16), server_default="interactive", nullable=False))
        batch_op.add_column(sa.Column("deadline_s", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("submit_failures", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("archive_attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index("ix_jobs_user_status", ["user_id", "status"], unique=False)
        batch_op.create_index("ix_jobs_status_deadline", ["status", "deadline_at"], unique=False)

    op.create_table(
        "vendor_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("vendor", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_vendor_attempts_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vendor_attempts")),
        sa.UniqueConstraint("job_id", "attempt", name=op.f("uq_vendor_attempts_job_id_attempt")),
    )


def downgrade() -> None:
    op.drop_table("vendor_attempts")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status_deadline")
        batch_op.drop_index("ix_jobs_user_status")
        for column in (
            "archive_attempts",
            "submit_failures",
            "not_before",
            "admitted_at",
            "deadline_s",
            "priority",
            "attempt",
            "fence",
        ):
            batch_op.drop_column(column)
