"""Vendor callbacks: verified, then treated as a hint to look now instead of at the next poll.

A callback never moves a job by itself: it enqueues a poll, and the polling actor re-queries the
vendor before any transition. A forged callback is refused; a genuine duplicate enqueues a poll
that finds nothing left to do.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException

from infra.resources import Resources
from vendors.kie import CallbackRejected, verify_callback
from workers import polling
from workers.lifecycle import dispatch

log = structlog.get_logger()


@post("/v1/callbacks/kie", status_code=200, tags=["callbacks"])
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
    dispatch(polling.poll_job, job.id)
    return {"received": True}
