"""row retention and stored monthly usage

Retention deletes ended jobs (JOB_RETENTION_DAYS) but never the ledger: a ledger row keeps the id
of the job it charged or refunded as a plain reference, so its foreign key to `jobs` goes. Each
closed month's usage per user and kind is stored once (`usage_months` marks a month stored, with
its rows in `monthly_usage`), so the report of a month does not change when its jobs are deleted.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

LEDGER_JOB_FK = "fk_credit_ledger_job_id_jobs"


def upgrade() -> None:
    with op.batch_alter_table("credit_ledger", schema=None) as batch_op:
        batch_op.drop_constraint(LEDGER_JOB_FK, type_="foreignkey")
    op.create_table(
        "usage_months",
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("month", name=op.f("pk_usage_months")),
    )
    op.create_table(
        "monthly_usage",
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("submitted", sa.Integer(), nullable=False),
        sa.Column("succeeded", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("batches", sa.Integer(), nullable=False),
        sa.Column("batch_jobs", sa.Integer(), nullable=False),
        sa.Column("credits_charged", sa.BigInteger(), nullable=False),
        sa.Column("credits_refunded", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["month"], ["usage_months.month"], name=op.f("fk_monthly_usage_month_usage_months")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_monthly_usage_user_id_users")),
        sa.PrimaryKeyConstraint("month", "user_id", "kind", name=op.f("pk_monthly_usage")),
    )


def downgrade() -> None:
    op.drop_table("monthly_usage")
    op.drop_table("usage_months")
    # ledger rows of jobs retention deleted can no longer name them under the key
    op.execute(
        "UPDATE credit_ledger SET job_id = NULL WHERE job_id IS NOT NULL AND job_id NOT IN (SELECT id FROM jobs)"
    )
    with op.batch_alter_table("credit_ledger", schema=None) as batch_op:
        batch_op.create_foreign_key(LEDGER_JOB_FK, "jobs", ["job_id"], ["id"])
