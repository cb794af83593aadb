from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain import credits
from domain.credits import LedgerKind
from domain.errors import InsufficientCredits, InvalidInput
from domain.jobs import JobKind
from domain.polling import PollSchedule
from domain.pricing import PriceList, Terms

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def test_charge_takes_the_price() -> None:
    entry = credits.charge("u1", 5, "j1", 3, at=NOW)

    assert (entry.kind, entry.amount, entry.job_id) == (LedgerKind.CHARGE, -3, "j1")


def test_charge_beyond_the_balance_is_refused() -> None:
    with pytest.raises(InsufficientCredits) as caught:
        credits.charge("u1", 2, "j1", 3, at=NOW)

    assert caught.value.details == {"needed": 3, "balance": 2}


def test_refund_gives_back_what_was_charged() -> None:
    assert credits.refund("u1", "j1", -3, at=NOW).amount == 3


def test_grant_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        credits.grant("u1", 0, at=NOW)


def test_price_list_quotes_configured_terms_and_refuses_unknown_kinds() -> None:
    prices = PriceList({JobKind.MODEL_POSE12: Terms(price=2, deadline_s=600)})

    assert prices.quote(JobKind.MODEL_POSE12) == Terms(2, 600)
    with pytest.raises(InvalidInput):
        PriceList({}).quote(JobKind.MODEL_POSE12)


def test_poll_interval_grows_with_elapsed_time() -> None:
    schedule = PollSchedule.parse("0:2,30:5,120:10", max_polls=100)

    assert [schedule.interval(t) for t in (0, 29.9, 30, 119, 120, 5000)] == [2, 2, 5, 5, 10, 10]


@pytest.mark.parametrize("text", ["5:2", "0:2,0:5", "0:0", "0:2,30:-1"])
def test_malformed_poll_schedules_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        PollSchedule.parse(text, max_polls=10)
