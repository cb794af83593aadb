"""Every message genq sends, by actor name: the one module senders go through.

No actor module imports another and the API imports none: they send here. Each job message
carries the job's fence (the token its row holds when the message is sent); the receiving actor
does nothing if the fence has moved on. A send that fails is not fatal: Redis may lose messages
anyway, and maintenance re-drives every job that stays too long in its state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dramatiq
import structlog

from vendors.moderation import Verdict

log = structlog.get_logger()


def send(queue: str, actor_name: str, *args: Any, delay_ms: int | None = None) -> bool:
    """Send after commit; False (logged) when the broker would not take it."""
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue, actor_name=actor_name, args=args, kwargs={}, options={}
    )
    try:
        dramatiq.get_broker().enqueue(message, delay=delay_ms or None)  # 0 is now, not the delay queue
    except Exception as exc:  # any broker failure means the same: the reconciler's turn
        log.warning("enqueue_failed", actor=actor_name, args=args[:2], error=repr(exc))
        return False
    return True


def check(job_id: str, fence: int) -> bool:
    """Moderate a `pending_audit` job's inputs."""
    return send("moderation", "moderation.check_job", job_id, fence)


def verdict(platform: str, platform_task_id: str, verdict: Verdict) -> bool:
    """Every verdict (in the call, pushed, or pulled) becomes this one event."""
    payload = {
        "decision": verdict.decision.value,
        "confidence": verdict.confidence,
        "labels": list(verdict.labels),
        "raw": dict(verdict.raw),
    }
    return send("moderation", "moderation.record_verdict", platform, platform_task_id, payload)


def enqueue(job_id: str, fence: int) -> bool:
    """Put a `queued` job in its waiting room and admit what the room can take."""
    return send("generation", "generation.enqueue_job", job_id, fence)


def admit(room: str, *, delay_ms: int | None = None) -> bool:
    """Run the room's admission (later, for a back-off or a vendor pause that ends then)."""
    return send("generation", "generation.admit_room", room, delay_ms=delay_ms)


def submit(job_id: str, fence: int) -> bool:
    """Call the vendor for an admitted (`submitting`) job."""
    return send("generation", "generation.submit_job", job_id, fence)


def poll(job_id: str, fence: int, *, delay_ms: int | None = None) -> bool:
    return send("polling", "polling.poll_job", job_id, fence, delay_ms=delay_ms)


def archive(job_id: str, fence: int, *, delay_ms: int | None = None) -> bool:
    return send("archiving", "archiving.archive_job", job_id, fence, delay_ms=delay_ms)


def cancel_task(job_id: str) -> bool:
    """Cancel a cancelled job's vendor task (where the vendor can) and free its slot."""
    return send("polling", "polling.cancel_task", job_id)


def refund(job_id: str) -> bool:
    """Refunds are keyed by the ledger (one per job), not fenced: any copy is harmless."""
    return send("refunds", "refunds.refund_job", job_id)


def webhook(delivery_id: str, fence: int, *, delay_ms: int | None = None) -> bool:
    """Try a webhook delivery (fenced like job messages: a stale copy sends nothing)."""
    return send("webhooks", "webhooks.deliver", delivery_id, fence, delay_ms=delay_ms)


def webhooks(deliveries: Sequence[tuple[str, int]]) -> None:
    """Announce the deliveries a committed state move wrote (the job store calls this)."""
    for delivery_id, fence in deliveries:
        webhook(delivery_id, fence)


def login_code(phone: str) -> bool:
    return send("maintenance", "accounts.send_login_code", phone)
