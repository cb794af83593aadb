"""Moderation rules (SPEC §5): what an audit's verdict means for its job. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class LowConfidence(StrEnum):
    """What a verdict the platform is unsure of counts as: AUDIT_LOW_CONFIDENCE."""

    REJECT = "reject"  # the safe default: unsure means no
    PASS = "pass"  # noqa: S105 - a verdict, not a password


def effective(decision: str, confidence: float, *, threshold: float, policy: LowConfidence) -> str:
    """`pass` or `reject`: a `review`, or any verdict below `threshold`, follows `policy`."""
    if decision == "review" or confidence < threshold:
        return policy.value
    return "reject" if decision == "reject" else "pass"


def job_outcome(decisions: Iterable[str | None]) -> str | None:
    """`reject` as soon as one input is rejected, `pass` once every input passed, else None (wait)."""
    seen = list(decisions)
    if "reject" in seen:
        return "reject"
    if seen and all(d == "pass" for d in seen):
        return "pass"
    return None
