"""Money under concurrency: read-modify-writes of a user row hold on PostgreSQL, not only on SQLite.

SQLite serializes writers (BEGIN IMMEDIATE), so these races only bite on PostgreSQL; threads are
released together by a barrier and each race runs a few rounds to make the window real.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from threading import Barrier
from typing import TypeVar

from sqlalchemy import Engine

from domain.plans import Plan, parse_plans
from infra.accounts import Accounts
from infra.orders import Membership
from infra.settings import Settings

T = TypeVar("T")
ROUNDS = 5
ORDINARY_CREDITS = 10_000  # enough that a repeated expire would not hit the balance floor


def race(threads: int, call: Callable[[int], T]) -> list[T]:
    """Run `call(i)` in `threads` threads released together; their results, or the first error."""
    barrier = Barrier(threads, timeout=10)

    def released(i: int) -> T:
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(released, i) for i in range(threads)]
    return [f.result() for f in futures]


def pro(settings: Settings) -> Plan:
    return parse_plans(settings.plans)["pro"]


def paid_order(membership: Membership, user_id: str, plan: Plan, *, at: datetime, days: int) -> None:
    order = membership.create_order(user_id, plan, "wechat", now=at)
    membership.paid(order.id, channel="wechat", transaction_id=order.id, amount_fen=plan.price_fen, now=at, days=days)


def member_until(accounts: Accounts, user_id: str) -> datetime | None:
    user = accounts.get(user_id)
    assert user is not None
    return user.member_until


def kinds(accounts: Accounts, user_id: str) -> list[str]:
    return [kind for _, kind, _ in accounts.ledger(user_id)]


def test_concurrent_lapse_checks_expire_the_plan_credits_once(db: Engine, base_settings: Settings) -> None:
    """Twenty submits right after a lapse each check it: one `expire` row, not one per check."""
    accounts, membership, days = Accounts(db), Membership(db), base_settings.membership_days
    now = datetime.now(UTC)
    user_ids = [accounts.create_user(f"1390000{r:04d}", ORDINARY_CREDITS, now=now).user_id for r in range(ROUNDS)]
    for user_id in user_ids:  # bought a month and a day ago: lapsed, plan credits unused
        paid_order(membership, user_id, pro(base_settings), at=now - timedelta(days=days + 1), days=days)

    for user_id in user_ids:
        race(20, lambda _i, user_id=user_id: membership.lapse_if_due(user_id, now=now))

    assert [kinds(accounts, u).count("expire") for u in user_ids] == [1] * ROUNDS
    assert [accounts.balance(u) for u in user_ids] == [accounts.ledger_sum(u) for u in user_ids]
    assert [accounts.balance(u) for u in user_ids] == [ORDINARY_CREDITS] * ROUNDS


def test_two_orders_paid_at_once_both_extend_the_membership(db: Engine, base_settings: Settings) -> None:
    """Two orders of one user paid at the same instant: both periods count, both grants land."""
    accounts, membership, days, plan = Accounts(db), Membership(db), base_settings.membership_days, pro(base_settings)
    now = datetime.now(UTC)
    user_ids = [accounts.create_user(f"1390000{r:04d}", 0, now=now).user_id for r in range(ROUNDS)]
    orders = [[membership.create_order(u, plan, "wechat", now=now).id for _ in range(2)] for u in user_ids]

    pay = partial(membership.paid, channel="wechat", amount_fen=plan.price_fen, now=now, days=days)
    granted = [race(2, lambda i, pair=pair: pay(pair[i], transaction_id=pair[i])) for pair in orders]

    assert granted == [[True, True]] * ROUNDS
    assert [member_until(accounts, u) for u in user_ids] == [now + timedelta(days=2 * days)] * ROUNDS
    assert [kinds(accounts, u) for u in user_ids] == [["grant", "grant"]] * ROUNDS
    assert [accounts.balance(u) for u in user_ids] == [accounts.ledger_sum(u) for u in user_ids]
