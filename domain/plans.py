"""Plans and membership (SPEC §4). Pure: values come from configuration, time is passed in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.errors import InvalidInput


@dataclass(frozen=True)
class Plan:
    name: str
    price_fen: int  # what one membership period costs, in fen (¥0.01)
    credits: int  # granted with each paid period
    concurrency: int  # jobs a member may have running at once
    batch: int  # rows a member may put in one batch

    @property
    def purchasable(self) -> bool:
        return self.price_fen > 0


def parse_plans(text: str) -> dict[str, Plan]:
    """`"free:0:0:1:5,pro:9900:100:3:15"` -> plans by name (name:price_fen:credits:concurrency:batch)."""
    plans = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, *numbers = item.split(":")
        if len(numbers) != 4 or not all(n.isdigit() for n in numbers):
            raise ValueError(f"{item!r} is not name:price_fen:credits:concurrency:batch")
        price, credits, concurrency, batch = (int(n) for n in numbers)
        plans[name] = Plan(name, price, credits, concurrency, batch)
    return plans


def purchasable(plans: Mapping[str, Plan], name: str) -> Plan:
    plan = plans.get(name)
    if plan is None or not plan.purchasable:
        offered = ", ".join(p.name for p in plans.values() if p.purchasable)
        raise InvalidInput("plan", f"{name!r} cannot be bought; plans on sale: {offered}")
    return plan


def extended(member_until: datetime | None, *, now: datetime, days: int) -> datetime:
    """Buying again extends a live membership; a lapsed one starts afresh from now."""
    start = member_until if member_until is not None and member_until > now else now
    return start + timedelta(days=days)


def batch_limit(plans: Mapping[str, Plan], plan: str | None, *, member: bool) -> tuple[str, int]:
    """(the plan that counts, the rows it allows in one batch); a lapsed or unknown plan is "free"."""
    counted = plan if member and plan is not None and plan in plans else "free"
    found = plans.get(counted)
    return counted, found.batch if found is not None else 1


def is_member(member_until: datetime | None, *, now: datetime) -> bool:
    return member_until is not None and member_until > now
