"""The transition table of SPEC §3: every allowed move passes, every other pair is refused."""

from __future__ import annotations

import itertools

import pytest

from domain.errors import IllegalTransition
from domain.jobs import ACTIVE, NEXT, REFUNDABLE, TERMINAL, JobStatus, check_transition, sources_of

S = JobStatus
ALLOWED = {
    (S.PENDING_AUDIT, S.QUEUED),
    (S.PENDING_AUDIT, S.AUDIT_FAILED),
    (S.PENDING_AUDIT, S.CANCELLED),
    (S.PENDING_AUDIT, S.FAILED),
    (S.QUEUED, S.SUBMITTING),
    (S.QUEUED, S.CANCELLED),
    (S.QUEUED, S.TIMED_OUT),
    (S.SUBMITTING, S.PROCESSING),
    (S.SUBMITTING, S.QUEUED),
    (S.SUBMITTING, S.FAILED),
    (S.SUBMITTING, S.CANCELLED),
    (S.PROCESSING, S.ARCHIVING),
    (S.PROCESSING, S.FAILED),
    (S.PROCESSING, S.TIMED_OUT),
    (S.PROCESSING, S.CANCELLED),
    (S.ARCHIVING, S.SUCCEEDED),
    (S.ARCHIVING, S.FAILED),
}
FORBIDDEN = sorted(set(itertools.product(S, S)) - ALLOWED)


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_allowed_move_passes(current: JobStatus, target: JobStatus) -> None:
    check_transition("j1", current, target)


@pytest.mark.parametrize(("current", "target"), FORBIDDEN)
def test_forbidden_move_is_refused(current: JobStatus, target: JobStatus) -> None:
    with pytest.raises(IllegalTransition) as caught:
        check_transition("j1", current, target)

    assert caught.value.code == "illegal_transition"
    assert caught.value.details == {"current": current, "target": target}


def test_table_is_exactly_the_allowed_set() -> None:
    assert {(a, b) for a, targets in NEXT.items() for b in targets} == ALLOWED


def test_terminal_states_never_move() -> None:
    assert {S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.CANCELLED, S.AUDIT_FAILED} == TERMINAL
    assert all(not NEXT.get(state) for state in TERMINAL)
    assert ACTIVE.isdisjoint(TERMINAL)


def test_every_terminal_state_but_success_is_refundable() -> None:
    assert TERMINAL - {S.SUCCEEDED} == REFUNDABLE


def test_sources_of_lists_every_predecessor() -> None:
    assert sources_of(S.FAILED) == {S.PENDING_AUDIT, S.SUBMITTING, S.PROCESSING, S.ARCHIVING}
