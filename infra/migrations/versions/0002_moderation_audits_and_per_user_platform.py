"""moderation audits and per-user platform

Adds the moderation_audits table (one row per submission of a moderated input of a job: a
re-submission by the pull fallback is a new attempt, so a late verdict for an earlier one still
counts; indexed on the platform's task id), the moderation platform chosen per user, per API key and per job, and a
CHECK that job statuses are the known ones (pending_audit and audit_failed among them).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The job statuses as of this revision (domain.jobs.JobStatus), written out: a migration must
# not change when the code does.
STATUSES = (
    "pending_audit",
    "queued",
    "submitting",
    "processing",
    "archiving",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "audit_failed",
)


def upgrade() -> None:
    op.create_table(
        "moderation_audits",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("item_no", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("item_kind", sa.String(length=8), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("platform_task_id", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=True),
        sa.Column("raw", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_moderation_audits_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_moderation_audits")),
        sa.UniqueConstraint("job_id", "item_no", "attempt", name=op.f("uq_moderation_audits_job_id_item_no_attempt")),
    )
    with op.batch_alter_table("moderation_audits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_moderation_audits_job_id"), ["job_id"], unique=False)
        batch_op.create_index("ix_moderation_audits_platform_task", ["platform", "platform_task_id"], unique=False)

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("moderation_platform", sa.String(length=16), nullable=True))

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("moderation_platform", sa.String(length=16), nullable=True))
        batch_op.create_check_constraint("status_known", f"status IN ({', '.join(repr(s) for s in STATUSES)})")

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("moderation_platform", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("moderation_platform")

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_jobs_status_known"), type_="check")
        batch_op.drop_column("moderation_platform")

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("moderation_platform")

    with op.batch_alter_table("moderation_audits", schema=None) as batch_op:
        batch_op.drop_index("ix_moderation_audits_platform_task")
        batch_op.drop_index(batch_op.f("ix_moderation_audits_job_id"))

    op.drop_table("moderation_audits")
