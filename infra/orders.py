"""Orders, payments and membership: the money side of the loop (SPEC §4).

A paid order grants its plan's credits (a `grant` ledger row) and extends the membership, in one
transaction with the order's move to `paid`; the move is a compare-and-set and each channel
transaction id is unique, so a notification delivered five times, or a notification racing a
re-check, grants once. On lapse the unused plan credits expire (an `expire` ledger row).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, RowMapping, Select, case, insert, select, update

from domain import plans as plan_rules
from domain.credits import LedgerEntry, LedgerKind
from domain.errors import Conflict, NotFound
from domain.plans import Plan
from infra.accounts import append, new_id
from infra.db import orders, reads, users

_Select = TypeVar("_Select", bound=Select[Any])


@dataclass(frozen=True)
class Order:
    id: str
    user_id: str
    plan: str
    channel: str
    amount_fen: int
    credits: int
    status: str  # pending | paid | failed
    payment: dict[str, Any] | None
    channel_transaction_id: str | None
    created_at: datetime
    paid_at: datetime | None


class AmountMismatch(Conflict):
    code = "amount_mismatch"


class Membership:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._reads = reads(engine)

    def create_order(self, user_id: str, plan: Plan, channel: str, *, now: datetime) -> Order:
        row = {
            "id": new_id(),
            "user_id": user_id,
            "plan": plan.name,
            "channel": channel,
            "amount_fen": plan.price_fen,
            "credits": plan.credits,
            "status": "pending",
            "created_at": now,
        }
        with self._engine.begin() as conn:
            conn.execute(insert(orders).values(**row))
        return self.order(str(row["id"]))

    def set_payment(self, order_id: str, payment: dict[str, Any]) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(orders).where(orders.c.id == order_id).values(payment=payment))

    def order(self, order_id: str) -> Order:
        with self._reads.connect() as conn:
            row = conn.execute(select(orders).where(orders.c.id == order_id)).mappings().one_or_none()
        if row is None:
            raise NotFound(f"no order {order_id}", order_id=order_id)
        return _order(row)

    def paid(
        self, order_id: str, *, channel: str, transaction_id: str, amount_fen: int, now: datetime, days: int
    ) -> bool:
        """Mark the order paid and grant its plan, once. False if it was already paid (a repeat).

        Raises NotFound for an unknown order, AmountMismatch when the channel's amount differs
        from the order's (nothing is granted).
        """
        with self._engine.begin() as conn:
            order = self._locked(conn, order_id)
            if order.channel != channel:
                raise NotFound(f"no {channel} order {order_id}", order_id=order_id)
            if order.amount_fen != amount_fen:
                raise AmountMismatch(
                    f"order {order_id} costs {order.amount_fen} fen; the channel reports {amount_fen}",
                    order_id=order_id,
                )
            moved = conn.execute(
                update(orders)
                .where(orders.c.id == order_id, orders.c.status != "paid")
                .values(status="paid", paid_at=now, channel_transaction_id=transaction_id)
            )
            if moved.rowcount != 1:
                return False
            self._grant(conn, order, now=now, days=days)
        return True

    def failed(self, order_id: str) -> bool:
        with self._engine.begin() as conn:
            moved = conn.execute(
                update(orders).where(orders.c.id == order_id, orders.c.status == "pending").values(status="failed")
            )
        return moved.rowcount == 1

    def lapse_if_due(self, user_id: str, *, now: datetime) -> int:
        """Expire the unused plan credits of a lapsed membership; how many expired (0: nothing due)."""
        with self._engine.begin() as conn:
            return _lapse(conn, user_id, now=now)[1]

    def lapsed(self, *, now: datetime, limit: int = 500) -> list[str]:
        query = (
            select(users.c.id)
            .where(users.c.member_until.is_not(None), users.c.member_until <= now, users.c.plan_credits > 0)
            .limit(limit)
        )
        with self._reads.connect() as conn:
            return list(conn.execute(query).scalars())

    def _locked(self, conn: Connection, order_id: str) -> Order:
        row = conn.execute(_for_update(conn, select(orders).where(orders.c.id == order_id))).mappings().one_or_none()
        if row is None:
            raise NotFound(f"no order {order_id}", order_id=order_id)
        return _order(row)

    def _grant(self, conn: Connection, order: Order, *, now: datetime, days: int) -> None:
        """Grant a paid order's credits and period, in the caller's transaction.

        member_until is read under the user row's lock: two orders paid at the same instant must
        both extend it, so the second waits for the first and extends what the first wrote.
        """
        query = select(users.c.member_until).where(users.c.id == order.user_id)
        member_until = conn.execute(_for_update(conn, query)).scalar_one()
        append(conn, LedgerEntry(order.user_id, None, LedgerKind.GRANT, order.credits, now))
        conn.execute(
            update(users)
            .where(users.c.id == order.user_id)
            .values(
                plan=order.plan,
                member_until=plan_rules.extended(member_until, now=now, days=days),
                plan_credits=users.c.plan_credits + order.credits,
            )
        )


@dataclass(frozen=True)
class Funds:
    balance: int
    plan_credits: int


def locked_funds(conn: Connection, user_id: str, *, now: datetime) -> Funds:
    """The user's balance, their row locked until the caller's transaction ends, after a lapsed
    membership's unused plan credits have expired (one SELECT when nothing lapsed)."""
    return _lapse(conn, user_id, now=now)[0]


def _lapse(conn: Connection, user_id: str, *, now: datetime) -> tuple[Funds, int]:
    """The user row is locked before deciding: many submits right after a lapse all check it, and
    only the first may see plan credits left (the others wait, then see none: one `expire` row)."""
    query = select(users.c.member_until, users.c.plan_credits, users.c.balance).where(users.c.id == user_id)
    user = conn.execute(_for_update(conn, query)).one_or_none()
    if user is None:
        return Funds(0, 0), 0
    funds = Funds(int(user.balance), int(user.plan_credits))
    if plan_rules.is_member(user.member_until, now=now) or funds.plan_credits <= 0:
        return funds, 0
    expiring = min(funds.plan_credits, funds.balance)
    conn.execute(update(users).where(users.c.id == user_id).values(plan_credits=0))
    if expiring:
        append(conn, LedgerEntry(user_id, None, LedgerKind.EXPIRE, -expiring, now))
    return Funds(funds.balance - expiring, 0), expiring


def spend_plan_credits(amount: int) -> dict[str, Any]:
    """The user-row change a charge makes beside its debit: plan credits are spent first (they are
    the ones that expire). Computed from the row it changes, in the debit's own UPDATE."""
    return {"plan_credits": case((users.c.plan_credits > amount, users.c.plan_credits - amount), else_=0)}


def _for_update(conn: Connection, query: _Select) -> _Select:
    """Lock the rows read until the transaction ends, so a read-modify-write of them is not lost.

    PostgreSQL only: SQLite serializes writers already (BEGIN IMMEDIATE, infra/db.py).
    """
    return query.with_for_update() if conn.dialect.name == "postgresql" else query


def _order(row: RowMapping) -> Order:
    return Order(
        id=row["id"],
        user_id=row["user_id"],
        plan=row["plan"],
        channel=row["channel"],
        amount_fen=row["amount_fen"],
        credits=row["credits"],
        status=row["status"],
        payment=row["payment"],
        channel_transaction_id=row["channel_transaction_id"],
        created_at=row["created_at"],
        paid_at=row["paid_at"],
    )
