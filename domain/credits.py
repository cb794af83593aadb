"""Credit rules (SPEC §4): a ledger, never a bare counter. Pure: the caller passes balances and time.

Invariants the data layer re-checks in SQL: balance >= 0; balance == sum(ledger); a job is charged
at most once and refunded at most once (unique (job_id, kind)).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.errors import InsufficientCredits


class LedgerKind(StrEnum):
    GRANT = "grant"
    CHARGE = "charge"
    REFUND = "refund"
    EXPIRE = "expire"
    ADJUST = "adjust"


@dataclass(frozen=True)
class LedgerEntry:
    user_id: str
    job_id: str | None
    kind: LedgerKind
    amount: int  # signed: what the entry adds to the balance
    at: datetime


def charge(user_id: str, balance: int, job_id: str, price: int, *, at: datetime) -> LedgerEntry:
    if price < 0:
        raise ValueError("a price is never negative")
    if balance < price:
        raise InsufficientCredits(price, balance)
    return LedgerEntry(user_id, job_id, LedgerKind.CHARGE, -price, at)


def refund(user_id: str, job_id: str, charged: int, *, at: datetime) -> LedgerEntry:
    """Give back exactly what the job's charge took (a zero-price job refunds zero)."""
    return LedgerEntry(user_id, job_id, LedgerKind.REFUND, abs(charged), at)


def grant(user_id: str, amount: int, *, at: datetime) -> LedgerEntry:
    if amount <= 0:
        raise ValueError("a grant is positive")
    return LedgerEntry(user_id, None, LedgerKind.GRANT, amount, at)
