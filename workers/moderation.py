"""The moderation pool (SPEC §5, seed 002: one asynchronous path for every platform).

`check_job` opens an audit per user-given input (the prompt, each image) and submits it to the
job's platform; it never waits for a verdict. Every verdict, whether the platform gave it in the
call, pushed it later, or answered a pull, reaches `record_verdict` as the same event, which
decides the audit once and then the job: all inputs pass -> `queued`; one is rejected ->
`audit_failed` + refund. A verdict the platform is unsure of follows AUDIT_LOW_CONFIDENCE.
A check the platform could not carry out (the verdict `failed`, e.g. WeChat could not download the
image) decides nothing: the input is submitted again at once, and after `CHECK_ATTEMPTS` such
failures the job is `audit_failed` + refund (an input nobody could check does not run).

Pull fallback: maintenance re-sends `check_job` for a job still pending after AUDIT_PULL_AFTER_S;
audits without a verdict are then queried where the platform can answer, else submitted again.
"""

from __future__ import annotations

import base64
import io
from dataclasses import replace
from datetime import timedelta
from typing import Any

import structlog

from domain.jobs import Job
from domain.jobs import JobStatus as S
from domain.moderation import LowConfidence, effective, job_outcome
from infra.audits import Audit, VerdictRecord
from vendors.base import VendorRejected
from vendors.moderation import CheckItem, Decision, ModerationPlatform
from workers import admission, kinds, messages
from workers.broker import actor
from workers.lifecycle import bind, claim, finish
from workers.runtime import Runtime

log = structlog.get_logger()
INPUT_URL_TTL_S = 3600
CHECK_ATTEMPTS = 3
"""Checks of one input that may fail (verdict `failed`) before its job is `audit_failed`."""


@actor(queue_name="moderation", max_retries=3, time_limit=120_000)
def check_job(rt: Runtime, job_id: str, fence: int) -> None:
    job = claim(rt, job_id, "moderation", S.PENDING_AUDIT, fence)
    if job is None:
        return
    inputs = kinds.moderation_inputs(job)
    if not inputs:
        _conclude(rt, job, "pass")
        return
    try:
        platform = rt.moderation_platform(job.moderation_platform or rt.settings.moderation_platform)
        decided = {a.item_no for a in rt.audits.for_job(job.id) if _speaks(a)}
        for item_no, given in enumerate(inputs):
            if item_no not in decided:
                audit = rt.audits.open(job.id, item_no, given.kind, platform.name, now=rt.now())
                _check(rt, job, platform, audit, given)
    except VendorRejected as exc:  # the input cannot be checked (unreachable, refused): not safe to run
        finish(rt, job, S.PENDING_AUDIT, S.AUDIT_FAILED, code=f"moderation_{exc.code}", message=str(exc))


def _check(rt: Runtime, job: Job, platform: ModerationPlatform, audit: Audit, given: kinds.ModerationInput) -> None:
    if audit.status == "decided":  # the platform could not check it (`failed`): a new attempt
        audit = rt.audits.again(audit, now=rt.now())
    if audit.status == "submitted" and audit.platform_task_id:
        if rt.now() - audit.updated_at < timedelta(seconds=rt.settings.audit_pull_after_s):
            return  # its verdict is on the way
        pulled = platform.query(audit.platform_task_id)
        if pulled is not None:
            messages.verdict(platform.name, audit.platform_task_id, pulled)
            return
        audit = rt.audits.again(audit, now=rt.now())  # no query, or no answer yet: submit again
    item = CheckItem(given.kind, given.text or given.url or _image_url(rt, job, audit.item_no, given))
    submission = rt.retrying(platform.name, "moderation", lambda: platform.submit(item, reference=audit.id))
    rt.audits.submitted(audit.id, submission.platform_task_id, now=rt.now())
    if submission.verdict is not None:  # answered in the call: delivered like a push
        messages.verdict(platform.name, submission.platform_task_id, submission.verdict)


def _image_url(rt: Runtime, job: Job, item_no: int, given: kinds.ModerationInput) -> str:
    """Uploads and base64 images are in (or go to) our storage; the platform fetches a signed URL."""
    key = given.upload_key
    if key is None:
        key = f"inputs/{job.user_id}/{job.id}/{item_no}.img"
        rt.storage.upload(key, io.BytesIO(base64.b64decode(given.base64 or "")), content_type="image/*")
    return rt.storage.signed_url(key, ttl_s=INPUT_URL_TTL_S)


@actor(queue_name="moderation", max_retries=5, time_limit=30_000)
def record_verdict(rt: Runtime, platform: str, platform_task_id: str, verdict: dict[str, Any]) -> None:
    """The one path every verdict takes; a repeated verdict changes nothing."""
    bind(platform_task_id, "moderation")
    record = VerdictRecord(
        decision=str(verdict["decision"]),
        confidence=float(verdict["confidence"]),
        labels=tuple(str(label) for label in verdict.get("labels") or ()),
        raw=dict(verdict.get("raw") or {}),
    )
    job_id = rt.audits.decide(platform, platform_task_id, record, now=rt.now())
    if job_id is None:
        log.info("verdict_repeated", platform=platform)
        return
    job = rt.jobs.get(job_id)
    if job is None or job.status is not S.PENDING_AUDIT:
        return
    if record.decision == Decision.FAILED:
        _check_failed(rt, job, platform, platform_task_id)
    else:
        _evaluate(rt, job)


def _check_failed(rt: Runtime, job: Job, platform: str, platform_task_id: str) -> None:
    """Submit the input again (`check_job` opens a new attempt), or fail the job once it has failed
    `CHECK_ATTEMPTS` times."""
    audits = rt.audits.for_job(job.id)
    failed = next((a for a in audits if (a.platform, a.platform_task_id) == (platform, platform_task_id)), None)
    if failed is None:
        return
    failures = sum(1 for a in audits if a.item_no == failed.item_no and a.decision == Decision.FAILED)
    log.info("moderation_check_failed", item_no=failed.item_no, failures=failures)
    if failures < CHECK_ATTEMPTS:
        messages.check(job.id, job.fence)
        return
    message = f"the moderation platform could not check input {failed.item_no} ({failures} attempts)"
    finish(rt, job, S.PENDING_AUDIT, S.AUDIT_FAILED, code="moderation_check_failed", message=message)


def _evaluate(rt: Runtime, job: Job) -> None:
    policy, threshold = LowConfidence(rt.settings.audit_low_confidence), rt.settings.audit_threshold
    audits = rt.audits.for_job(job.id)
    decided: dict[int, str] = {}
    for a in audits:  # an input's first decided attempt speaks for it
        if _speaks(a) and a.item_no not in decided:
            decided[a.item_no] = effective(a.decision or "", a.confidence or 0.0, threshold=threshold, policy=policy)
    outcome = job_outcome(decided.get(no) for no in range(len(kinds.moderation_inputs(job))))
    if outcome is not None:
        labels = sorted({label for a in audits for label in a.labels})
        _conclude(rt, job, outcome, labels)


def _speaks(audit: Audit) -> bool:
    """A verdict on the input: decided, and not a check that failed."""
    return audit.status == "decided" and audit.decision != Decision.FAILED


def _conclude(rt: Runtime, job: Job, outcome: str, labels: list[str] | None = None) -> None:
    if outcome == "reject":
        finish(rt, job, S.PENDING_AUDIT, S.AUDIT_FAILED, code="moderation_rejected", message=", ".join(labels or []))
        return
    now = rt.now()
    deadline = now + timedelta(seconds=rt.policy.current.max_wait_s)
    fence = rt.jobs.move(
        job.id, S.PENDING_AUDIT, S.QUEUED, now=now, fence=job.fence, detail={"moderation": "pass"}, deadline_at=deadline
    )
    if fence is not None:
        admission.enqueue(rt, replace(job, status=S.QUEUED, fence=fence, deadline_at=deadline))
