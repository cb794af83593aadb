"""Users, API keys and the credit ledger.

API keys are shown once and stored as SHA-256 digests: they are 256-bit random tokens, so a fast
hash is enough (nothing to brute-force), and lookup stays one indexed equality.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from domain import credits
from domain.credits import LedgerEntry
from domain.errors import InsufficientCredits
from infra.db import api_keys, credit_ledger, reads, users
from infra.paging import newest_first

KEY_PREFIX = "gq_"


@dataclass(frozen=True)
class KeyOwner:
    user_id: str
    moderation_platform: str | None
    role: str = "user"
    webhook_url: str | None = None  # the key's default for the jobs it submits
    webhook_events: str | None = None


@dataclass(frozen=True)
class User:
    id: str
    phone: str
    role: str
    balance: int
    plan: str | None
    member_until: datetime | None
    plan_credits: int
    moderation_platform: str | None
    created_at: datetime
    disabled_at: datetime | None = None


@dataclass(frozen=True)
class ApiKey:
    """A key as its owner sees it after creation: never the key itself, only its last four."""

    id: str
    last4: str
    created_at: datetime
    revoked_at: datetime | None
    webhook_url: str | None = None
    webhook_events: str | None = None


@dataclass(frozen=True)
class NewUser:
    user_id: str
    api_key: str  # shown once, never stored


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_id() -> str:
    return uuid.uuid4().hex


class Accounts:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._reads = reads(engine)

    def create_user(
        self,
        phone: str,
        credits_: int,
        *,
        now: datetime,
        moderation_platform: str | None = None,
        role: str = "user",
    ) -> NewUser:
        user_id, api_key = new_id(), KEY_PREFIX + secrets.token_urlsafe(32)
        with self._engine.begin() as conn:
            conn.execute(
                insert(users).values(
                    id=user_id,
                    phone=phone,
                    balance=0,
                    created_at=now,
                    moderation_platform=moderation_platform,
                    role=role,
                )
            )
            conn.execute(
                insert(api_keys).values(
                    id=new_id(), user_id=user_id, key_hash=hash_key(api_key), last4=api_key[-4:], created_at=now
                )
            )
            if credits_ > 0:
                append(conn, credits.grant(user_id, credits_, at=now))
        return NewUser(user_id, api_key)

    def user_for_key(self, api_key: str) -> str | None:
        owner = self.key_owner(api_key)
        return owner.user_id if owner else None

    def key_owner(self, api_key: str) -> KeyOwner | None:
        """Who holds this key, and the moderation platform it names (the key's, else the user's)."""
        query = (
            select(
                api_keys.c.user_id,
                api_keys.c.moderation_platform,
                users.c.moderation_platform.label("user_platform"),
                users.c.role,
                api_keys.c.webhook_url,
                api_keys.c.webhook_events,
            )
            .join(users, users.c.id == api_keys.c.user_id)
            .where(
                api_keys.c.key_hash == hash_key(api_key),
                api_keys.c.revoked_at.is_(None),
                users.c.disabled_at.is_(None),
            )
        )
        with self._reads.connect() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            return None
        platform = row.moderation_platform or row.user_platform
        return KeyOwner(row.user_id, platform, row.role, row.webhook_url, row.webhook_events)

    def create_key(
        self, user_id: str, *, now: datetime, webhook: tuple[str | None, str | None] = (None, None)
    ) -> tuple[ApiKey, str]:
        """A new key for the user (with the webhook its jobs default to): (what is kept of it, the
        key itself, shown once)."""
        key_id, api_key = new_id(), KEY_PREFIX + secrets.token_urlsafe(32)
        row = {
            "id": key_id,
            "user_id": user_id,
            "key_hash": hash_key(api_key),
            "last4": api_key[-4:],
            "created_at": now,
            "webhook_url": webhook[0],
            "webhook_events": webhook[1],
        }
        with self._engine.begin() as conn:
            conn.execute(insert(api_keys).values(**row))
        return ApiKey(key_id, api_key[-4:], now, None, *webhook), api_key

    def keys(self, user_id: str) -> list[ApiKey]:
        query = select(api_keys).where(api_keys.c.user_id == user_id).order_by(api_keys.c.created_at, api_keys.c.id)
        with self._reads.connect() as conn:
            return [
                ApiKey(r.id, r.last4, r.created_at, r.revoked_at, r.webhook_url, r.webhook_events)
                for r in conn.execute(query)
            ]

    def revoke_key(self, key_id: str, *, now: datetime, user_id: str | None = None) -> bool:
        """Revoke a key (the owner's own when `user_id` is given); False when there is no such live key.
        API processes keep a looked-up key for KEY_CACHE_TTL_S: they refuse it within that time."""
        query = update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        if user_id is not None:
            query = query.where(api_keys.c.user_id == user_id)
        with self._engine.begin() as conn:
            return conn.execute(query.values(revoked_at=now)).rowcount == 1

    def set_disabled(self, user_id: str, *, disabled: bool, now: datetime) -> bool:
        """Disable (every key and token refused; running jobs finish) or enable a user again."""
        with self._engine.begin() as conn:
            moved = conn.execute(
                update(users).where(users.c.id == user_id).values(disabled_at=now if disabled else None)
            )
        return moved.rowcount == 1

    def get(self, user_id: str) -> User | None:
        with self._reads.connect() as conn:
            row = conn.execute(select(users).where(users.c.id == user_id)).mappings().one_or_none()
        return None if row is None else _user(row)

    def search(
        self, *, phone: str | None = None, role: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[User], str | None]:
        """Users newest first; `phone` matches any part of the number."""
        query = select(users)
        if phone:
            query = query.where(users.c.phone.contains(phone, autoescape=True))
        if role:
            query = query.where(users.c.role == role)
        with self._reads.connect() as conn:
            rows, next_cursor = newest_first(conn, query, users, limit=limit, cursor=cursor)
        return [_user(row) for row in rows], next_cursor

    def by_phone(self, phone: str, *, create_at: datetime | None = None) -> User | None:
        """The user with this phone; with `create_at`, created (no credits, no key) if there is none."""
        with self._engine.begin() as conn:
            row = conn.execute(select(users).where(users.c.phone == phone)).mappings().one_or_none()
            if row is None and create_at is not None:
                dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
                new = {"id": new_id(), "phone": phone, "balance": 0, "created_at": create_at, "role": "user"}
                conn.execute(dialect.insert(users).values(**new).on_conflict_do_nothing())
                row = conn.execute(select(users).where(users.c.phone == phone)).mappings().one()
        return None if row is None else _user(row)

    def set_moderation_platform(self, user_id: str, platform: str | None) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(users).where(users.c.id == user_id).values(moderation_platform=platform))

    def plans(self, user_ids: Iterable[str]) -> dict[str, tuple[str | None, datetime | None]]:
        """(plan, member_until) per user: what their in-flight cap and fair-share weight follow."""
        ids = list(set(user_ids))
        if not ids:
            return {}
        query = select(users.c.id, users.c.plan, users.c.member_until).where(users.c.id.in_(ids))
        with self._reads.connect() as conn:
            return {row.id: (row.plan, row.member_until) for row in conn.execute(query)}

    def ledger_mismatches(self, *, limit: int = 100) -> list[tuple[str, int, int]]:
        """(user id, balance, ledger sum) for every user whose balance is not the sum of their ledger
        (the invariant every money move keeps; a mismatch is a bug or a hand edit)."""
        total = func.coalesce(func.sum(credit_ledger.c.amount), 0)
        query = (
            select(users.c.id, users.c.balance, total)
            .select_from(users.outerjoin(credit_ledger, credit_ledger.c.user_id == users.c.id))
            .group_by(users.c.id, users.c.balance)
            .having(users.c.balance != total)
            .limit(limit)
        )
        with self._reads.connect() as conn:
            return [(row[0], int(row[1]), int(row[2])) for row in conn.execute(query)]

    def balance(self, user_id: str) -> int:
        with self._reads.connect() as conn:
            return int(conn.execute(select(users.c.balance).where(users.c.id == user_id)).scalar_one())

    def ledger_sum(self, user_id: str) -> int:
        query = select(func.coalesce(func.sum(credit_ledger.c.amount), 0)).where(credit_ledger.c.user_id == user_id)
        with self._reads.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def ledger(self, user_id: str) -> list[tuple[str | None, str, int]]:
        """(job_id, kind, amount) rows, oldest first."""
        query = (
            select(credit_ledger.c.job_id, credit_ledger.c.kind, credit_ledger.c.amount)
            .where(credit_ledger.c.user_id == user_id)
            .order_by(credit_ledger.c.id)
        )
        with self._reads.connect() as conn:
            return [(r.job_id, r.kind, int(r.amount)) for r in conn.execute(query)]


def _user(row: Any) -> User:
    return User(
        id=row["id"],
        phone=row["phone"],
        role=row["role"],
        balance=int(row["balance"]),
        plan=row["plan"],
        member_until=row["member_until"],
        plan_credits=int(row["plan_credits"]),
        moderation_platform=row["moderation_platform"],
        created_at=row["created_at"],
        disabled_at=row["disabled_at"],
    )


LEDGER_CHECK_KEY = "genq:maintenance:ledger"  # the last balance = ledger check, for /metrics


def record_ledger_check(client: redis.Redis, *, mismatches: int, at: datetime) -> None:
    """Keep the daily check's result where any process answering a scrape can read it."""
    client.hset(LEDGER_CHECK_KEY, mapping={"mismatches": mismatches, "checked_at": at.timestamp()})


def last_ledger_check(client: redis.Redis) -> tuple[int, float] | None:
    """(mismatches, when, as Unix seconds) of the last check; None before the first."""
    last = client.hgetall(LEDGER_CHECK_KEY)
    return (int(last[b"mismatches"]), float(last[b"checked_at"])) if last else None


def append(conn: Connection, entry: LedgerEntry, *, also: Mapping[str, Any] | None = None) -> bool:
    """Write a ledger row and move the balance by its amount, in the caller's transaction.

    Returns False, changing nothing, when the row's (job_id, kind) is already there: that is what
    makes a repeated charge or refund a no-op. A debit re-checks the balance in SQL. `also`: more
    columns of the user row, set by the same UPDATE (a charge spends plan credits with it).
    """
    row = {
        "user_id": entry.user_id,
        "job_id": entry.job_id,
        "kind": entry.kind.value,
        "amount": entry.amount,
        "created_at": entry.at,
    }
    if conn.execute(_insert_ignore(conn, row).returning(credit_ledger.c.id)).scalar_one_or_none() is None:
        return False
    move = (
        update(users).where(users.c.id == entry.user_id).values(balance=users.c.balance + entry.amount, **(also or {}))
    )
    if entry.amount < 0:
        move = move.where(users.c.balance >= -entry.amount)
    if conn.execute(move).rowcount != 1:
        raise InsufficientCredits(-entry.amount, current_balance(conn, entry.user_id))
    return True


def current_balance(conn: Connection, user_id: str) -> int:
    return int(conn.execute(select(users.c.balance).where(users.c.id == user_id)).scalar_one())


def _insert_ignore(conn: Connection, row: Mapping[str, object]) -> Insert:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(credit_ledger).values(**row).on_conflict_do_nothing()
    if conn.dialect.name == "sqlite":
        return sqlite.insert(credit_ledger).values(**row).on_conflict_do_nothing()
    raise NotImplementedError(f"no insert-or-ignore for {conn.dialect.name}")
