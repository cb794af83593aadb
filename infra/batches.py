"""Batches in the database: the row a batch stores, and what its jobs' ledger says it cost.

Everything else about a batch (its rows' states, progress, failures) is read from its jobs
(`JobStore.of_batch`); a batch and its jobs are written together by `JobStore.create_many`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, RowMapping, func, select

from domain.credits import LedgerKind
from infra.db import batches, credit_ledger, jobs, reads
from infra.paging import newest_first


@dataclass(frozen=True)
class Batch:
    id: str
    user_id: str
    name: str | None
    kind: str
    defaults: dict[str, Any]
    rows: int
    status: str  # running | paused | cancelled, as stored
    created_at: datetime
    updated_at: datetime
    request_hash: str | None


class BatchStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._reads = reads(engine)

    def get(self, batch_id: str) -> Batch | None:
        with self._reads.connect() as conn:
            row = conn.execute(select(batches).where(batches.c.id == batch_id)).mappings().one_or_none()
        return None if row is None else _batch(row)

    def get_for_user(self, user_id: str, batch_id: str) -> Batch | None:
        batch = self.get(batch_id)
        return batch if batch is not None and batch.user_id == user_id else None

    def by_key(self, user_id: str, key: str) -> Batch | None:
        query = select(batches).where(batches.c.user_id == user_id, batches.c.idempotency_key == key)
        with self._reads.connect() as conn:
            row = conn.execute(query).mappings().one_or_none()
        return None if row is None else _batch(row)

    def list_for_user(self, user_id: str, *, limit: int, cursor: str | None) -> tuple[list[Batch], str | None]:
        with self._reads.connect() as conn:
            rows, next_cursor = newest_first(
                conn, select(batches).where(batches.c.user_id == user_id), batches, limit=limit, cursor=cursor
            )
        return [_batch(row) for row in rows], next_cursor

    def money(self, batch_id: str) -> tuple[int, int]:
        """(credits charged, credits refunded) over every job of the batch, retries included."""
        query = (
            select(credit_ledger.c.kind, func.coalesce(func.sum(credit_ledger.c.amount), 0))
            .join(jobs, jobs.c.id == credit_ledger.c.job_id)
            .where(jobs.c.batch_id == batch_id)
            .group_by(credit_ledger.c.kind)
        )
        with self._reads.connect() as conn:
            sums = {kind: int(total) for kind, total in conn.execute(query)}
        return -sums.get(LedgerKind.CHARGE, 0), sums.get(LedgerKind.REFUND, 0)


def _batch(row: RowMapping) -> Batch:
    return Batch(
        id=row["id"],
        user_id=row["user_id"],
        name=row["name"],
        kind=row["kind"],
        defaults=dict(row["defaults"]),
        rows=row["rows"],
        status=row["status"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        request_hash=row["request_hash"],
    )
