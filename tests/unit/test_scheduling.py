"""The admission scheduler's rules (SPEC §6): classes, size weights, fair share, degradation, retries."""

from __future__ import annotations

from typing import Any

import pytest

from domain.jobs import JobKind
from domain.scheduling import (
    DegradePolicy,
    FairShare,
    Health,
    PriorityClass,
    RoomView,
    Waiting,
    admission_threshold,
    charged,
    choose,
    effective_limit,
    observe,
    ordered,
    plan_cap,
    priority_class,
    retry_wait,
    roll,
    size_weight,
)

P = PriorityClass
FAST, SLOW, INTER = P.BATCH_FAST, P.BATCH_SLOW, P.INTERACTIVE


def video(model: str, resolution: str, duration: int) -> dict[str, Any]:
    return {"model": model, "resolution": resolution, "duration": duration}


V720_10 = video("sora-2", "720p", 10)
V720_15 = video("sora-2", "720p", 15)
PRO_720_10 = video("sora-2-pro", "720p", 10)
PRO_720_15 = video("sora-2-pro", "720p", 15)
PRO_1080_10 = video("sora-2-pro", "1080p", 10)
PRO_1080_15 = video("sora-2-pro", "1080p", 15)
OTHER_KINDS = [(JobKind.BASIC_CLEAN, {}), (JobKind.MODEL_POSE12, {}), (JobKind.MODEL_3D, {"version": "3.1"})]


@pytest.mark.parametrize(
    ("kind", "job_input", "batch", "expected"),
    [
        (JobKind.VIDEO, V720_10, True, FAST),
        (JobKind.VIDEO, V720_15, True, FAST),
        (JobKind.VIDEO, PRO_720_10, True, FAST),
        (JobKind.VIDEO, PRO_720_15, True, FAST),
        (JobKind.VIDEO, PRO_1080_10, True, FAST),
        (JobKind.VIDEO, PRO_1080_15, True, SLOW),
        (JobKind.VIDEO, {**PRO_1080_15, "duration": "15"}, True, SLOW),
        *[(JobKind.VIDEO, v, False, INTER) for v in (V720_10, V720_15, PRO_720_10, PRO_720_15, PRO_1080_10)],
        (JobKind.VIDEO, PRO_1080_15, False, INTER),
        *[(kind, job_input, True, FAST) for kind, job_input in OTHER_KINDS],
        *[(kind, job_input, False, INTER) for kind, job_input in OTHER_KINDS],
    ],
)
def test_priority_class(kind: JobKind, job_input: dict[str, Any], batch: bool, expected: PriorityClass) -> None:
    assert priority_class(kind, job_input, batch=batch) is expected


@pytest.mark.parametrize(
    ("kind", "job_input", "expected"),
    [
        (JobKind.VIDEO, V720_10, 1.3),
        (JobKind.VIDEO, V720_15, 1.0),
        (JobKind.VIDEO, PRO_720_10, 1.3),
        (JobKind.VIDEO, PRO_720_15, 1.0),
        (JobKind.VIDEO, PRO_1080_10, 0.845),
        (JobKind.VIDEO, PRO_1080_15, 0.65),
        *[(kind, job_input, 1.0) for kind, job_input in OTHER_KINDS],
    ],
)
def test_size_weight(kind: JobKind, job_input: dict[str, Any], expected: float) -> None:
    assert size_weight(kind, job_input) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("limit", "job_input", "expected"),
    [
        (5, PRO_720_10, 5),  # 6.5 capped at the room's limit
        (5, PRO_720_15, 5),
        (5, PRO_1080_10, 4),
        (5, PRO_1080_15, 3),
        (1, PRO_1080_15, 1),  # never below 1 while the room is open
        (1, PRO_720_10, 1),
        (0, PRO_720_15, 0),  # a closed room admits nothing
        (10, PRO_1080_15, 6),
        (20, PRO_1080_15, 13),
    ],
)
def test_admission_threshold_of_a_video(limit: int, job_input: dict[str, Any], expected: int) -> None:
    assert admission_threshold(limit, size_weight(JobKind.VIDEO, job_input)) == expected


@pytest.mark.parametrize(
    ("limit", "weight", "expected"),
    [
        (20, 0.65, 13),
        (20, 0.65 - 1e-15, 13),  # 12.99999999999998: float noise, not a smaller share
        (100, 0.57, 57),  # 100 x 0.57 == 56.99999999999999
        (10, 1.0, 10),
        (3, 1.0, 3),
        (-1, 1.0, 0),
    ],
)
def test_admission_threshold_floors_through_float_noise(limit: int, weight: float, expected: int) -> None:
    assert admission_threshold(limit, weight) == expected


PLANS = {"free": 1, "pro": 3, "pro_plus": 5, "enterprise": 10}


@pytest.mark.parametrize(
    ("plans", "plan", "member", "expected"),
    [
        (PLANS, "pro", True, 3),
        (PLANS, "pro_plus", True, 5),
        (PLANS, "enterprise", True, 10),
        (PLANS, "free", True, 1),
        (PLANS, "enterprise", False, 1),  # a lapsed membership falls back to free
        (PLANS, None, False, 1),
        (PLANS, "retired", True, 1),
        ({"free": 2, "pro": 3}, None, False, 2),
        ({"pro": 3}, None, False, 1),  # no free plan configured
    ],
)
def test_plan_cap(plans: dict[str, int], plan: str | None, member: bool, expected: int) -> None:
    assert plan_cap(plans, plan, member=member) == expected


def jobs(user: str, count: int, *, start: float = 0.0, cls: PriorityClass = FAST, weight: float = 1.0) -> list[Waiting]:
    return [Waiting(f"{user}{i}", user, cls, start + i, weight=weight) for i in range(count)]


def room(
    *, limit: int = 5, in_flight: int = 0, share: FairShare | None = None, weights: dict[str, int] | None = None
) -> RoomView:
    return RoomView(limit, in_flight, share or FairShare(), weights or {})


def test_a_newcomer_overtakes_a_deep_backlog() -> None:
    """A already had 2 admissions; B arrives after A's 40 jobs and still starts within the first 2."""
    share = charged(charged(FairShare(), "A", 1), "A", 1)
    waiting = jobs("A", 40) + jobs("B", 2, start=100)

    order = ordered(room(share=share), waiting)

    assert "B0" in [w.job_id for w in order[:2]]


def test_fair_share_is_weighted_by_plan_concurrency() -> None:
    """Weights A 1, B 3: every 8 consecutive admissions give A 2 ± 1 and B 6 ± 1."""
    waiting = jobs("A", 60) + jobs("B", 180, start=0.5)

    order = [w.user_id for w in ordered(room(weights={"A": 1, "B": 3}), waiting)][:200]

    windows = [order[i : i + 8] for i in range(len(order) - 7)]
    assert all(abs(w.count("A") - 2) <= 1 and abs(w.count("B") - 6) <= 1 for w in windows)


def test_a_users_jobs_keep_their_arrival_order() -> None:
    waiting = [Waiting("late", "A", FAST, 9.0), Waiting("early", "A", FAST, 1.0), Waiting("mid", "A", FAST, 5.0)]

    assert [w.job_id for w in ordered(room(), waiting)] == ["early", "mid", "late"]


def test_priority_class_comes_before_arrival() -> None:
    waiting = [Waiting("slow", "A", SLOW, 1.0), Waiting("fast", "B", FAST, 2.0), Waiting("now", "C", INTER, 3.0)]

    assert [w.job_id for w in ordered(room(), waiting)] == ["now", "fast", "slow"]


def test_equal_start_tags_go_to_the_earlier_arrival() -> None:
    waiting = [Waiting("b", "B", FAST, 1.0), Waiting("a", "A", FAST, 2.0)]

    assert [w.job_id for w in ordered(room(), waiting)] == ["b", "a"]


def test_charged_moves_the_finish_tag_by_one_over_the_weight() -> None:
    share = charged(charged(FairShare(vclock=4.0), "A", 2), "A", 2)

    assert (share.vclock, share.finish) == (4.5, {"A": 5.0})


def test_charged_forgets_finish_tags_the_clock_has_passed() -> None:
    share = charged(FairShare(vclock=3.0, finish={"old": 2.0, "ahead": 7.0}), "A", 1)

    assert share.finish == {"ahead": 7.0, "A": 4.0}


def test_choose_skips_a_capped_user() -> None:
    waiting = jobs("A", 2) + jobs("B", 1, start=10)

    chosen = choose(room(), waiting, now=0.0, capped={"A"})

    assert chosen is not None and chosen.job_id == "B0"


def test_choose_skips_a_job_still_backing_off() -> None:
    waiting = [Waiting("retry", "A", FAST, 1.0, not_before=50.0), Waiting("fresh", "B", FAST, 2.0)]

    chosen = choose(room(), waiting, now=49.0)

    assert chosen is not None and chosen.job_id == "fresh"


def test_choose_takes_a_backed_off_job_once_ready() -> None:
    waiting = [Waiting("retry", "A", FAST, 1.0, not_before=50.0), Waiting("fresh", "B", FAST, 2.0)]

    chosen = choose(room(), waiting, now=50.0)

    assert chosen is not None and chosen.job_id == "retry"


def test_choose_passes_a_heavy_job_over_its_threshold_for_a_lighter_one() -> None:
    """Limit 5 with 3 in flight: a 1080p-15 s job (threshold 3) waits, a 720p job behind it goes."""
    heavy = Waiting("heavy", "A", FAST, 1.0, weight=size_weight(JobKind.VIDEO, PRO_1080_15))
    light = Waiting("light", "B", FAST, 2.0, weight=size_weight(JobKind.VIDEO, PRO_720_10))

    chosen = choose(room(limit=5, in_flight=3), [heavy, light], now=0.0)

    assert chosen is light
    assert ordered(room(limit=5, in_flight=3), [heavy, light])[0] is heavy  # it keeps its place


def test_choose_returns_none_when_the_room_is_full() -> None:
    assert choose(room(limit=5, in_flight=5), jobs("A", 3), now=0.0) is None


def test_choose_returns_none_when_nothing_is_admissible() -> None:
    assert choose(room(), jobs("A", 3), now=0.0, capped={"A"}) is None


POLICY = DegradePolicy()  # 60 s windows, > 30 % failures over >= 5 outcomes, x 0.6
T0 = 1_000.0


def outcomes(health: Health, oks: list[bool], *, at: float, limit: int = 5) -> Health:
    for ok in oks:
        health = observe(health, ok=ok, now=at, limit=limit, policy=POLICY)
    return health


def degraded_room() -> Health:
    """Limit 5, 10 outcomes at 50 % failures in the window starting at T0."""
    return outcomes(Health(), [False, True] * 5, at=T0)


def test_half_failures_degrade_the_room_to_3() -> None:
    health = degraded_room()

    assert (effective_limit(health, 5), health.window_start) == (3, T0)


def test_the_room_recovers_one_step_per_healthy_window() -> None:
    health = outcomes(degraded_room(), [True] * 5, at=T0 + 60)  # the failing window closes: still 3
    assert effective_limit(health, 5) == 3

    health = outcomes(health, [True] * 5, at=T0 + 120)
    assert effective_limit(health, 5) == 4

    health = roll(health, now=T0 + 180, limit=5, policy=POLICY)
    assert (health.degraded_to, effective_limit(health, 5)) == (None, 5)


@pytest.mark.parametrize(
    ("elapsed", "degraded_to"),
    [
        (59.0, 2),  # the window has not ended
        (60.0, 3),
        (125.0, 4),
        (180.0, None),  # three empty windows: 2 -> 5, the full limit
        (10_000.0, None),
    ],
)
def test_empty_windows_passing_at_once_recover_several_steps(elapsed: float, degraded_to: int | None) -> None:
    health = Health(window_start=T0, degraded_to=2)

    rolled = roll(health, now=T0 + elapsed, limit=5, policy=POLICY)

    assert rolled.degraded_to == degraded_to
    assert rolled.window_start == T0 + 60 * int(elapsed // 60)


def test_fewer_outcomes_than_min_samples_never_degrade() -> None:
    health = outcomes(Health(), [False] * 4, at=T0)

    assert (health.degraded_to, effective_limit(health, 5)) == (None, 5)


def test_the_min_samples_th_failure_degrades() -> None:
    health = outcomes(Health(), [False] * 5, at=T0)

    assert effective_limit(health, 5) == 3


def test_a_failing_window_keeps_the_room_degraded_while_it_recovers() -> None:
    health = outcomes(Health(window_start=T0, degraded_to=4), [False] * 5, at=T0 + 1)

    assert effective_limit(roll(health, now=T0 + 61, limit=5, policy=POLICY), 5) == 3


def test_a_room_of_one_degrades_to_one() -> None:
    health = outcomes(Health(), [False] * 5, at=T0, limit=1)

    assert effective_limit(health, 1) == 1


def test_a_fresh_health_starts_its_first_window_now() -> None:
    assert roll(Health(), now=T0, limit=5, policy=POLICY) == Health(window_start=T0)


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 2.0), (2, 4.0), (3, 8.0), (4, None), (10, None)],
)
def test_retry_wait(attempt: int, expected: float | None) -> None:
    assert retry_wait(attempt, (2.0, 4.0, 8.0)) == expected


def test_retry_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        retry_wait(0, (2.0, 4.0, 8.0))
