"""The refunds pool: every terminal job other than `succeeded` gets its charge back, once.

The ledger's unique (job_id, kind) makes a second refund a no-op, so a duplicate message or the
reconciler's re-send is harmless.
"""

from __future__ import annotations

import structlog

from infra import metrics
from workers.broker import actor
from workers.lifecycle import bind
from workers.runtime import Runtime

log = structlog.get_logger()


@actor(queue_name="refunds", max_retries=5, time_limit=30_000)
def refund_job(rt: Runtime, job_id: str) -> None:
    bind(job_id, "refunds")
    if rt.jobs.refund(job_id, now=rt.now()):
        job = rt.jobs.get(job_id)
        if job is not None:
            metrics.CREDITS_REFUNDED.labels(job.kind).inc(job.price)
        log.info("job_refunded")
    else:
        log.info("refund_skipped")
