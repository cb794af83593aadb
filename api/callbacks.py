"""Vendor callbacks: verified, then treated as a hint to look now instead of at the next poll.

A callback never moves a job by itself: it enqueues a poll, and the polling actor re-queries the
vendor before any transition. A forged callback is refused; a genuine duplicate enqueues a poll
that finds nothing left to do.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import structlog
from litestar import Request, Response, post, route
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException
from litestar.params import FromPath, RawBody

from api import docs
from domain.errors import NotFound
from domain.jobs import JobStatus
from infra.resources import Resources
from vendors.kie import CallbackRejected, verify_callback
from vendors.moderation import ModerationPlatform, PushRejected, PushRequest
from workers import messages

log = structlog.get_logger()


class ModerationPlatforms:
    """The configured moderation adapters by name (a plain class: Litestar checks dependency types)."""

    def __init__(self, platforms: Mapping[str, ModerationPlatform]) -> None:
        self._platforms = dict(platforms)

    def get(self, name: str) -> ModerationPlatform | None:
        return self._platforms.get(name)


@post(
    "/v1/callbacks/kie",
    status_code=200,
    tags=["callbacks"],
    responses=docs.errors(
        (401, "`unauthorized`: a missing, wrong or stale signature, or callbacks are off (no KIE_WEBHOOK_HMAC_KEY).")
    ),
)
async def kie_callback(request: Request[Any, Any, Any], resources: NamedDependency[Resources]) -> dict[str, bool]:
    body = await request.body()
    key = resources.settings.kie_webhook_hmac_key.reveal()
    if not key:
        raise NotAuthorizedException("callbacks are not enabled: KIE_WEBHOOK_HMAC_KEY is unset")
    try:
        task_id = verify_callback(dict(request.headers), body, hmac_key=key, now=time.time())
    except CallbackRejected as exc:
        log.warning("callback_rejected", vendor="kie", reason=exc.reason)
        raise NotAuthorizedException(f"callback rejected: {exc.reason}") from None
    job = resources.jobs.by_vendor_task("kie", task_id)
    if job is None:
        log.info("callback_unknown_task", vendor="kie", vendor_task_id=task_id)
        return {"received": True}
    log.info("callback_received", vendor="kie", job_id=job.id, status=job.status)
    if job.status is JobStatus.PROCESSING:
        messages.poll(job.id, job.fence)  # a hint: it takes the chain's turn, and the poll re-queries
    return {"received": True}


@route(
    "/v1/callbacks/moderation/{platform:str}",
    http_method=["GET", "POST"],
    tags=["callbacks"],
    sync_to_thread=True,
    responses=docs.errors(
        (401, "`unauthorized`: the push fails the platform's own verification (signature or token)."),
        (404, "`not_found`: no moderation platform of this name is configured."),
    ),
)
def moderation_callback(
    request: Request[Any, Any, Any],
    body: RawBody,
    platform: FromPath[str],
    moderation_platforms: NamedDependency[ModerationPlatforms],
) -> Response[str]:
    """A platform's verdict push (or its URL-verification handshake), verified by its own scheme.

    Each verdict becomes the same event an in-call answer does; a repeated push decides nothing twice.
    """
    adapter = moderation_platforms.get(platform)
    if adapter is None:
        raise NotFound(f"no moderation platform {platform} is configured", platform=platform)
    push = PushRequest(request.method, dict(request.query_params), dict(request.headers), body)
    try:
        events, answer = adapter.parse_push(push)
    except PushRejected as exc:
        log.warning("moderation_push_rejected", platform=platform, reason=exc.reason)
        raise NotAuthorizedException(f"push rejected: {exc.reason}") from None
    for platform_task_id, verdict in events:
        messages.verdict(platform, platform_task_id, verdict)
    return Response(answer.body, status_code=answer.status, media_type=answer.content_type)
