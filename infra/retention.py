"""Retention of rows (SPEC §10, seed 000's daily cleanup of expired records): ended jobs older than
JOB_RETENTION_DAYS go, with their events, webhook deliveries and tries, moderation audits and vendor
attempts. The ledger is never deleted: it is the money's history, and each of its rows keeps the
id of the job it charged or refunded (0012 dropped that foreign key for this).

A job is kept, whatever its age, while anything may still need it:
- a refund it is owed (a refundable job charged and not refunded yet: the refund finds the job);
- a webhook delivery still pending;
- money or an end in a month whose usage is not stored yet (`kept_from`, see infra.reports):
  deleting it would change that month's report;
- a batch it is a row of, until every row of the batch may go: then the batch and all its jobs go
  together, so a batch never answers with rows missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, FromClause, and_, delete, exists, select

from domain.credits import LedgerKind
from domain.jobs import REFUNDABLE, TERMINAL
from infra.db import (
    batches,
    credit_ledger,
    job_events,
    jobs,
    moderation_audits,
    vendor_attempts,
    webhook_attempts,
    webhook_deliveries,
)

TABLES = (
    "jobs",
    "job_events",
    "webhook_deliveries",
    "webhook_attempts",
    "moderation_audits",
    "vendor_attempts",
    "batches",
)


@dataclass(frozen=True)
class Doomed:
    """Jobs (and whole batches) retention may delete, and the files they still hold."""

    ended_before: datetime
    kept_from: datetime
    job_ids: tuple[str, ...]
    batch_ids: tuple[str, ...]
    files: Mapping[str, tuple[tuple[str, int], ...]]  # job id -> (key, size) of results still stored

    def keys(self) -> list[str]:
        return [key for held in self.files.values() for key, _ in held]


@dataclass(frozen=True)
class Purged:
    job_ids: frozenset[str]
    rows: Mapping[str, int]  # per table


def doomed(engine: Engine, *, ended_before: datetime, kept_from: datetime, limit: int = 500) -> Doomed:
    """Up to `limit` lone jobs and `limit // 25 + 1` whole batches that may go, oldest first."""
    bound = min(ended_before, kept_from)
    lone = (
        select(jobs.c.id)
        .where(jobs.c.batch_id.is_(None), _purgeable(jobs, ended_before, kept_from))
        .order_by(jobs.c.finished_at)
        .limit(limit)
    )
    row = jobs.alias("row")
    whole = (
        select(batches.c.id)
        .where(
            batches.c.created_at < bound,
            ~exists().where(row.c.batch_id == batches.c.id, ~_purgeable(row, ended_before, kept_from)),
        )
        .order_by(batches.c.created_at)
        .limit(limit // 25 + 1)
    )
    with engine.connect() as conn:
        batch_ids = tuple(conn.execute(whole).scalars())
        of_batches = select(jobs.c.id).where(jobs.c.batch_id.in_(batch_ids))
        job_ids = (*conn.execute(lone).scalars(), *conn.execute(of_batches).scalars())
        files = _files(conn, job_ids)
    return Doomed(ended_before, kept_from, job_ids, batch_ids, files)


def purge(engine: Engine, found: Doomed) -> Purged:
    """Delete what `doomed` found, in one transaction, checking again that each job may go."""
    rows = dict.fromkeys(TABLES, 0)
    with engine.begin() as conn:
        ids = list(
            conn.execute(
                select(jobs.c.id).where(
                    jobs.c.id.in_(found.job_ids), _purgeable(jobs, found.ended_before, found.kept_from)
                )
            ).scalars()
        )
        if ids:
            deliveries = select(webhook_deliveries.c.id).where(webhook_deliveries.c.job_id.in_(ids))
            rows["webhook_attempts"] = _gone(conn, webhook_attempts, webhook_attempts.c.delivery_id.in_(deliveries))
            rows["webhook_deliveries"] = _gone(conn, webhook_deliveries, webhook_deliveries.c.job_id.in_(ids))
            rows["job_events"] = _gone(conn, job_events, job_events.c.job_id.in_(ids))
            rows["moderation_audits"] = _gone(conn, moderation_audits, moderation_audits.c.job_id.in_(ids))
            rows["vendor_attempts"] = _gone(conn, vendor_attempts, vendor_attempts.c.job_id.in_(ids))
            rows["jobs"] = _gone(conn, jobs, jobs.c.id.in_(ids))
        if found.batch_ids:
            left = exists().where(jobs.c.batch_id == batches.c.id)
            rows["batches"] = _gone(conn, batches, and_(batches.c.id.in_(found.batch_ids), ~left))
    return Purged(frozenset(ids), rows)


def _purgeable(j: FromClause, ended_before: datetime, kept_from: datetime) -> ColumnElement[bool]:
    """Ended before both bounds, no refund owed, no delivery pending, no money after `kept_from`."""
    ledger = credit_ledger.c
    charged = exists().where(ledger.job_id == j.c.id, ledger.kind == LedgerKind.CHARGE.value)
    refunded = exists().where(ledger.job_id == j.c.id, ledger.kind == LedgerKind.REFUND.value)
    late_money = exists().where(ledger.job_id == j.c.id, ledger.created_at >= kept_from)
    pending = exists().where(webhook_deliveries.c.job_id == j.c.id, webhook_deliveries.c.status == "pending")
    owed = and_(j.c.status.in_([s.value for s in REFUNDABLE]), charged, ~refunded)
    return and_(
        j.c.status.in_([s.value for s in TERMINAL]),
        j.c.finished_at.is_not(None),
        j.c.finished_at < min(ended_before, kept_from),
        ~late_money,
        ~pending,
        ~owed,
    )


def _files(conn: Connection, job_ids: tuple[str, ...]) -> dict[str, tuple[tuple[str, int], ...]]:
    query = select(jobs.c.id, jobs.c.results).where(jobs.c.id.in_(job_ids), jobs.c.results_expired_at.is_(None))
    held = {row.id: tuple((f["key"], int(f["size"])) for f in row.results or ()) for row in conn.execute(query)}
    return {job_id: files for job_id, files in held.items() if files}


def _gone(conn: Connection, table: Any, where: ColumnElement[bool]) -> int:
    return int(conn.execute(delete(table).where(where)).rowcount)
