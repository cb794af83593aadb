"""`/v1/jobs`: submit (charge + record in one transaction, enqueue after commit), read, list.

Reads answer from the database only; nothing here ever calls a vendor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_202_ACCEPTED

from api import docs
from api.accounts import client_ip, limits
from api.auth import CurrentUser
from api.inputs import Images, JobIn, prefetch, request_hash, validated_input
from api.views import JobOut
from domain import scheduling
from domain.errors import Conflict, InvalidInput, NotFound, TooLate, UnsupportedMediaType
from domain.inputs import ImageFacts
from domain.jobs import RETRYABLE, Job, JobKind, JobStatus
from domain.pricing import PriceList
from domain.routing import route
from domain.webhooks import EventFilter
from infra import metrics, waiting
from infra.accounts import new_id
from infra.images import check_public_url
from infra.jobstore import NewJob
from infra.paging import is_id
from infra.resources import Resources
from workers import messages

T = TypeVar("T")


class JobPage(msgspec.Struct):
    items: list[JobOut]
    next_cursor: str | None


PreferHeader = Annotated[str | None, HeaderParameter(name="Prefer", max_length=256, required=False)]
IdempotencyKey = Annotated[
    str | None, HeaderParameter(name="Idempotency-Key", min_length=1, max_length=128, required=False)
]
User = NamedDependency[CurrentUser]
Res = NamedDependency[Resources]


def json_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A guard (it runs before the body is read): a body in another format is 415, not a parse error.
    No body at all is no format: the handler decides whether it needs one."""
    headers = connection.headers
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    no_body = not media_type and headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers
    if media_type != "application/json" and not no_body:
        raise UnsupportedMediaType(f"send the body as application/json, not {media_type or 'no content type'}")


class JobsController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]

    @post(
        "/",
        status_code=HTTP_202_ACCEPTED,
        responses=docs.errors(
            401,
            402,
            (409, "`conflict`: the `Idempotency-Key` was used with another body, or `external_id` names another job."),
            (429, "`rate_limited`: too many jobs this minute, per user or per IP; `Retry-After` says when to retry."),
        ),
    )
    async def create_job(
        self,
        data: JSONBody[JobIn],
        user: User,
        resources: Res,
        prices: NamedDependency[PriceList],
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKey = None,
        prefer: PreferHeader = None,
    ) -> Response[JobOut]:
        """Charge the job's price and accept it; 402 `insufficient_credits` when the balance is short.

        `Prefer: wait=N` (N <= 60): answer once the job has ended, or after N seconds with its state.
        """
        ip = client_ip(request)
        fetched = await prefetch(resources.images, data.kind, data.input)  # image URLs: fetched without a thread
        wait = prefer_wait(prefer) or 0

        def create() -> tuple[Job, bool, JobOut | None]:  # the answer in the same hop, unless it waits
            job, created = _create(data, user, resources, prices, ip, idempotency_key, fetched)
            if wait:
                return job, created, None
            if created:
                return job, created, answer_for(resources, job, moves=[(job.status, job.created_at)], fresh=True)
            return job, created, answer_for(resources, job)

        job, created, answer = await to_thread(create)
        headers = {} if created else {"Idempotent-Replayed": "true"}
        if answer is None:  # it waits
            job = await until_ended(resources, job, wait)
            headers["Preference-Applied"] = f"wait={wait}"
            answer = await to_thread(lambda: answer_for(resources, job))
        return Response(answer, status_code=HTTP_202_ACCEPTED, headers=headers)

    @get("/{job_id:str}", responses=docs.errors(401, 404))
    async def read_job(
        self, job_id: FromPath[str], user: User, resources: Res, prefer: PreferHeader = None
    ) -> Response[JobOut]:
        """The job, from the database only. `Prefer: wait=N` (N <= 60): answer once it has ended, or
        after N seconds with its state (`Preference-Applied` says the wait was honoured)."""
        wait = prefer_wait(prefer)
        if not wait:  # the read and the answer in one hop to a thread
            return Response(await to_thread(lambda: answer_for(resources, _owned(resources, user, job_id), pull=True)))
        job = await until_ended(resources, await to_thread(lambda: _owned(resources, user, job_id)), wait)
        answer = await to_thread(lambda: answer_for(resources, job, pull=True))
        return Response(answer, headers={"Preference-Applied": f"wait={wait}"})

    @post(
        "/{job_id:str}/cancel",
        status_code=200,
        sync_to_thread=True,
        responses=docs.errors(401, 404, (409, "`too_late` while the job is archiving; `conflict` once it has ended.")),
    )
    def cancel_job(self, job_id: FromPath[str], user: User, resources: Res) -> JobOut:
        """Cancel and refund: a waiting job at once; a running one also at the vendor where the vendor
        documents a cancel (RunningHub). 409 `too_late` while archiving; 409 once it has finished."""
        job = resources.jobs.get_for_user(user.id, job_id) if is_id(job_id) else None
        if job is None:
            raise NotFound(f"no job {job_id}", job_id=job_id)
        cancelled = cancel(resources, job)
        metrics.JOBS_FINISHED.labels(cancelled.kind, JobStatus.CANCELLED).inc()
        return JobOut.of(cancelled, resources, moves=resources.jobs.moves([job.id])[job.id])

    @post(
        "/{job_id:str}/retry",
        status_code=HTTP_202_ACCEPTED,
        responses=docs.errors(
            401, 402, 404, (409, "`conflict`: only a failed, timed-out or cancelled job is retried.")
        ),
    )
    async def retry_job(
        self, job_id: FromPath[str], user: User, resources: Res, prices: NamedDependency[PriceList]
    ) -> JobOut:
        """A new job with the same input, charged again (today's price), linked both ways
        (`retry_of`, `retried_by`). Only a failed, timed-out or cancelled job can be retried (409)."""
        job = await to_thread(lambda: resources.jobs.get_for_user(user.id, job_id) if is_id(job_id) else None)
        if job is None:
            raise NotFound(f"no job {job_id}", job_id=job_id)
        if job.status not in RETRYABLE:
            raise Conflict(f"a {job.status} job cannot be retried", job_id=job.id, status=job.status)
        again = await to_thread(lambda: retry(resources, prices, job))
        return await to_thread(lambda: answer_for(resources, again))

    @get("/", sync_to_thread=True, responses=docs.errors(400, 401))
    def list_jobs(
        self,
        user: User,
        resources: Res,
        status: FromQuery[JobStatus | None] = None,
        kind: FromQuery[JobKind | None] = None,
        external_id: Annotated[str | None, QueryParameter(min_length=1, max_length=128)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        cursor: FromQuery[str | None] = None,
    ) -> JobPage:
        """The caller's jobs, newest first; pass `next_cursor` back as `cursor` for the next page."""
        page, next_cursor = resources.jobs.list_for_user(
            user.id, status=status, kind=kind, external_id=external_id, limit=limit, cursor=cursor
        )
        moves = resources.jobs.moves(job.id for job in page)
        return JobPage([JobOut.of(job, resources, moves=moves[job.id]) for job in page], next_cursor)


CANCEL_TRIES = 5  # the job may move on while we try: each try reads it again


def cancel(resources: Resources, job: Job, *, by: str = "owner") -> Job:
    """The move to `cancelled` is a compare-and-set in the database, so a restart forgets no cancel;
    the vendor's side is the workers' (the API never calls a vendor)."""
    for _ in range(CANCEL_TRIES):
        if job.status is JobStatus.ARCHIVING:
            raise TooLate("the job's results are being copied: too late to cancel", job_id=job.id)
        if job.terminal:
            raise Conflict(f"the job has already ended {job.status}", job_id=job.id, status=job.status)
        moved = resources.jobs.move(
            job.id,
            job.status,
            JobStatus.CANCELLED,
            now=datetime.now(UTC),
            fence=job.fence,
            detail={"by": by},
            error_code="cancelled",
            error_message=f"cancelled by {'its owner' if by == 'owner' else 'an admin'}",
        )
        if moved is not None:
            _after_cancel(resources, job)
            return resources.jobs.get(job.id) or job
        job = resources.jobs.get(job.id) or job
    raise Conflict("the job kept moving; try again", job_id=job.id)


def _after_cancel(resources: Resources, job: Job) -> None:
    messages.refund(job.id)
    if job.status is JobStatus.QUEUED:
        resources.rooms.remove(job.slot, job.id)
    elif job.status is JobStatus.PROCESSING:
        messages.cancel_task(job.id)  # the vendor's task, then its slot
    # SUBMITTING: the submitter finds its job cancelled, cancels the task it gets and lets go


def _create(
    data: JobIn,
    user: CurrentUser,
    resources: Resources,
    prices: PriceList,
    ip: str,
    idempotency_key: str | None,
    fetched: Mapping[str, ImageFacts],
) -> tuple[Job, bool]:
    settings = resources.settings
    limits(
        resources,
        [
            (f"jobs:user:{user.id}", settings.rate_jobs_per_minute, 60),
            (f"jobs:ip:{ip}", settings.rate_jobs_per_minute_ip, 60),
        ],
        what="jobs",
    )
    checked = validated_input(data.kind, data.input, Images(resources.images, resources.storage, user.id, fetched))
    hook = webhook_of(resources, data.webhook_url, data.webhook_events, default=(user.webhook_url, user.webhook_events))
    terms = prices.quote(data.kind, checked)
    target = route(data.kind, checked)
    return _record(
        resources,
        NewJob(
            id=new_id(),
            user_id=user.id,
            kind=data.kind,
            status=JobStatus.QUEUED,  # or pending_audit: _record decides
            input=checked,
            price=terms.price,
            vendor=target.vendor,
            model=target.model,
            deadline_at=datetime.now(UTC),  # _record sets the first stage's
            deadline_s=terms.deadline_s,
            priority=scheduling.priority_class(data.kind, checked, batch=data.priority == "batch"),
            idempotency_key=idempotency_key,
            request_hash=request_hash(data.kind, checked, data.priority, data.external_id, hook),
            external_id=data.external_id,
            webhook_url=hook[0],
            webhook_events=hook[1],
            moderation_platform=user.moderation_platform or settings.moderation_platform,
        ),
    )


def webhook_of(
    resources: Resources,
    url: str | None,
    events: str | None,
    *,
    default: tuple[str | None, str | None] = (None, None),
) -> tuple[str | None, str | None]:
    """The job's webhook target (a public address, or one FETCH_ALLOWLIST names) and event filter;
    without a URL of its own, the API key's `default` (checked when the key was made)."""
    if url is None and default[0] is not None:
        return default[0], events or default[1] or EventFilter.COMPLETED
    if url is None:
        if events is not None:
            raise InvalidInput("webhook_events", "give a webhook_url to choose its events")
        return None, None
    check_public_url("webhook_url", url, resources.images.allowlist, what="webhook targets")
    return url, events or EventFilter.COMPLETED


def _owned(resources: Resources, user: User, job_id: str) -> Job:
    job = resources.jobs.get_for_user(user.id, job_id) if is_id(job_id) else None
    if job is None:
        raise NotFound(f"no job {job_id}", job_id=job_id)
    return job


def answer_for(
    resources: Resources,
    job: Job,
    *,
    moves: Sequence[tuple[JobStatus, datetime]] | None = None,
    pull: bool = False,
    fresh: bool = False,
) -> JobOut:
    """The job as answered: its queue place while it waits, its timings; with `pull`, a moderation
    still without a verdict is asked again (the answer stays ours). A `fresh` job, created by this
    request, has no place to read: the generation pool puts it in its room after this answer."""
    now = datetime.now(UTC)
    pull_after = timedelta(seconds=resources.settings.audit_pull_after_s)
    if pull and job.status is JobStatus.PENDING_AUDIT and now - job.updated_at >= pull_after:
        messages.check(job.id, job.fence)
    queue = None
    if job.status is JobStatus.QUEUED and not fresh:
        queue = waiting.queue_info(
            resources.effective(), resources.rooms, resources.accounts, resources.jobs, job, now=now
        )
    if moves is None:
        moves = resources.jobs.moves([job.id])[job.id]
    retried_by = resources.jobs.retried_by(job.id) if job.status in RETRYABLE else None
    return JobOut.of(job, resources, queue=queue, moves=moves, retried_by=retried_by)


PREFER_WAIT_MAX_S = 60


def prefer_wait(header: str | None) -> int | None:
    """`wait=N` of an RFC 7240 `Prefer` header, capped at 60 s; None when absent or unreadable."""
    for part in (header or "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "wait" and value.strip().isdigit():
            return min(int(value.strip()), PREFER_WAIT_MAX_S) or None
    return None


async def until_ended(resources: Resources, job: Job, wait_s: float) -> Job:
    """The job once it has ended, or as it is after `wait_s`. Waiting holds no thread: each look at
    the database borrows one briefly, at a growing interval (0.1 s up to 1 s)."""
    deadline = anyio.current_time() + wait_s
    pause, latest = 0.1, job
    while not latest.terminal and (left := deadline - anyio.current_time()) > 0:
        await anyio.sleep(min(pause, left))
        pause = min(pause * 2, 1.0)
        found: Job | None = await anyio.to_thread.run_sync(resources.jobs.get, job.id)
        latest = found or latest
    return latest


async def to_thread(call: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(call)


def retry(resources: Resources, prices: PriceList, job: Job) -> Job:
    """Run `job` again as a new job, charged again; see `again`."""
    retried, _ = _record(resources, again(resources, prices, job))
    return retried


def again(resources: Resources, prices: PriceList, job: Job) -> NewJob:
    """A new job for the same owner: the same kind and input (checked when first submitted), in the
    same class, webhook and batch row, priced today. A direct upload's signed URL, written in when
    first submitted, is made afresh."""
    job_input = dict(job.input)
    if job_input.get("upload_key"):
        job_input.pop("image_url", None)
    terms = prices.quote(job.kind, job_input)
    return NewJob(
        id=new_id(),
        user_id=job.user_id,
        kind=job.kind,
        status=JobStatus.QUEUED,
        input=job_input,
        price=terms.price,
        vendor=job.vendor,
        model=job.model,
        deadline_at=datetime.now(UTC),
        deadline_s=terms.deadline_s,
        priority=job.priority,
        moderation_platform=job.moderation_platform or resources.settings.moderation_platform,
        retry_of=job.id,
        webhook_url=job.webhook_url,
        webhook_events=job.webhook_events,
        batch_id=job.batch_id,
        batch_row=job.batch_row,
    )


def _record(resources: Resources, new: NewJob) -> tuple[Job, bool]:
    """Charge and record a job, then send its first message. Returns (job, created)."""
    now = datetime.now(UTC)
    job, created = resources.jobs.create(first_stage(resources, new, now=now), now=now)
    if created:
        started(resources, job.id, job.kind, job.price)
    return job, created


def first_stage(resources: Resources, new: NewJob, *, now: datetime) -> NewJob:
    """A new job's first state: moderation when audits are on (its deadline AUDIT_DEADLINE_S),
    else its room (MAX_WAIT_S)."""
    settings = resources.effective()
    audit = resources.settings.audit_enabled
    return replace(
        new,
        status=JobStatus.PENDING_AUDIT if audit else JobStatus.QUEUED,
        deadline_at=now + timedelta(seconds=settings.audit_deadline_s if audit else settings.max_wait_s),
        moderation_platform=new.moderation_platform if audit else None,
    )


def started(resources: Resources, job_id: str, kind: JobKind, price: int) -> None:
    """Count a job recorded (committed) and send its first message (a new job's fence is 0)."""
    metrics.JOBS_SUBMITTED.labels(kind).inc()
    metrics.CREDITS_CHARGED.labels(kind).inc(price)
    (messages.check if resources.settings.audit_enabled else messages.enqueue)(job_id, 0)
