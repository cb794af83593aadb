from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain import credits
from domain.credits import LedgerKind
from domain.errors import InsufficientCredits, InvalidInput
from domain.jobs import JobKind
from domain.pricing import PatternTable, PriceList, Terms
from domain.scheduling import PollSchedule
from infra.settings import Settings

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


DEFAULT_PRICES = Settings().prices
DEFAULT_DEADLINES = Settings().deadlines


def default_prices() -> PriceList:
    return PriceList(PatternTable.parse(DEFAULT_PRICES, int), PatternTable.parse(DEFAULT_DEADLINES, int))


@pytest.mark.parametrize(
    ("kind", "job_input", "price", "deadline"),
    [
        (JobKind.BASIC_CLEAN, {}, 1, 120),
        (JobKind.MODEL_POSE12, {}, 1, 600),
        (JobKind.VIDEO, {"model": "sora-2", "resolution": "720p", "duration": 10}, 15, 300),
        (JobKind.VIDEO, {"model": "sora-2", "resolution": "720p", "duration": 15}, 20, 300),
        (JobKind.VIDEO, {"model": "sora-2-pro", "resolution": "720p", "duration": 10}, 45, 300),
        (JobKind.VIDEO, {"model": "sora-2-pro", "resolution": "720p", "duration": 15}, 60, 300),
        (JobKind.VIDEO, {"model": "sora-2-pro", "resolution": "1080p", "duration": 10}, 100, 900),
        (JobKind.VIDEO, {"model": "sora-2-pro", "resolution": "1080p", "duration": 15}, 130, 900),
        (JobKind.MODEL_3D, {"version": "3.0"}, 5, 86400),
        (JobKind.MODEL_3D, {"version": "3.1"}, 5, 86400),
    ],
)
def test_default_prices_and_deadlines_are_spec_section_2(
    kind: JobKind, job_input: dict[str, object], price: int, deadline: int
) -> None:
    assert default_prices().quote(kind, job_input) == Terms(price, deadline)


def test_the_most_specific_pattern_wins() -> None:
    table = PatternTable.parse("video=1,video/*/1080p=2,video/sora-2-pro/1080p/15=3", int)

    assert [table.lookup(k) for k in ("video/sora-2/720p/10", "video/x/1080p/10", "video/sora-2-pro/1080p/15")] == [
        1,
        2,
        3,
    ]
    assert table.lookup("model_3d/3.0") is None


def test_an_unpriced_variant_is_not_offered() -> None:
    prices = PriceList(PatternTable.parse("basic_clean=1", int), PatternTable.parse("basic_clean=60", int))

    with pytest.raises(InvalidInput):
        prices.quote(JobKind.MODEL_POSE12, {})


def test_poll_interval_grows_with_elapsed_time() -> None:
    schedule = PollSchedule.parse("0:2,30:5,120:10", max_polls=100)

    assert [schedule.interval(t) for t in (0, 29.9, 30, 119, 120, 5000)] == [2, 2, 5, 5, 10, 10]


@pytest.mark.parametrize("text", ["5:2", "0:2,0:5", "0:0", "0:2,30:-1"])
def test_malformed_poll_schedules_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        PollSchedule.parse(text, max_polls=10)
