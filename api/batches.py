"""`/v1/batches` (seed 001): many rows of one kind in one request, charged all or nothing, run as
batch-class jobs under the plan's concurrency, watched, paused, resumed, cancelled, retried, and
downloaded as one zip.

Each row is a job (`batch_id`, `batch_row`); a batch answers from its rows' latest jobs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
import msgspec
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage, Stream
from sqlalchemy.exc import IntegrityError

from api import archive, docs
from api.accounts import limit
from api.auth import CurrentUser
from api.events import KEEP_ALIVE_S
from api.inputs import Images, Url, request_hash, validated_input
from api.jobs import IdempotencyKey, again, cancel, first_stage, started, webhook_of
from api.views import ErrorOut
from domain import batches, scheduling
from domain.batches import BatchStatus
from domain.errors import Conflict, InvalidInput, NotFound
from domain.jobs import ACTIVE, REFUNDABLE, RETRYABLE, TERMINAL, Job, JobKind, JobStatus
from domain.plans import batch_limit, is_member, parse_plans
from domain.pricing import PriceList
from domain.routing import route
from infra.accounts import new_id
from infra.batches import Batch
from infra.jobstore import NewBatch, NewJob
from infra.paging import is_id
from infra.resources import Resources
from workers import messages

User = NamedDependency[CurrentUser]
Res = NamedDependency[Resources]
Prices = NamedDependency[PriceList]
ExternalId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class DefaultsIn(msgspec.Struct, forbid_unknown_fields=True):
    kind: JobKind
    input: dict[str, Any] = msgspec.field(default_factory=dict)
    webhook_url: Url | None = None  # every row's job delivers its events here
    webhook_events: Literal["completed", "all"] | None = None


class RowIn(msgspec.Struct, forbid_unknown_fields=True):
    input: dict[str, Any] = msgspec.field(default_factory=dict)  # fields that override defaults.input
    external_id: ExternalId | None = None


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    defaults: DefaultsIn
    rows: Annotated[list[RowIn], msgspec.Meta(min_length=1, max_length=500)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None


class FailureOut(msgspec.Struct):
    code: str
    count: int
    retry_worthy: bool  # time, capacity, a vendor's transient trouble; not a refusal of the input


class BatchOut(msgspec.Struct):
    """`counts` and `progress` follow each row's latest job (a retried row counts once);
    `estimated_completion_at` extrapolates the rate rows have ended at so far (null before the first
    ends, and while paused)."""

    id: str
    name: str | None
    kind: JobKind
    status: BatchStatus
    rows: int
    counts: dict[str, int]
    finished: int
    progress: float
    credits_charged: int
    credits_refunded: int
    failures: list[FailureOut]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    estimated_completion_at: datetime | None


class BatchPage(msgspec.Struct):
    items: list[BatchOut]
    next_cursor: str | None


class RowOut(msgspec.Struct):
    row: int
    job_id: str
    status: JobStatus
    error: ErrorOut | None
    retry_of: str | None
    external_id: str | None


class BatchesController(Controller):
    path = "/v1/batches"
    tags = ["batches"]

    @post(
        "/",
        status_code=201,
        sync_to_thread=True,
        responses=docs.errors(
            401,
            (402, "`insufficient_credits`: the balance is short of the rows' total (`details.needed`)."),
            (409, "An Idempotency-Key reused with another batch, or an external_id already taken."),
            (422, "`batch_too_large` (more rows than the plan allows), or a bad row (`rows[i].input.<field>`)."),
            429,
        ),
    )
    def create_batch(
        self,
        data: JSONBody[BatchIn],
        user: User,
        resources: Res,
        prices: Prices,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[BatchOut]:
        """Rows from `defaults` + each row's overrides, each checked as `POST /v1/jobs` checks a job
        (a bad row: 422 naming `rows[i]`), at most the plan's batch size (422 `batch_too_large`),
        charged in one transaction (402 with the total, nothing written)."""
        settings = resources.settings
        limit(resources, f"jobs:user:{user.id}", per=settings.rate_jobs_per_minute, window_s=60, what="jobs")
        now = datetime.now(UTC)
        plan, rows_allowed = _batch_limit(resources, user.id, now=now)
        batches.check_size(len(data.rows), limit=rows_allowed, plan=plan)
        news, digest = _rows(resources, prices, user, data)
        if idempotency_key and (earlier := resources.batches.by_key(user.id, idempotency_key)):
            return _replayed(resources, earlier, digest)
        batch = NewBatch(
            id=news[0].batch_id or new_id(),
            user_id=user.id,
            name=data.name,
            kind=data.defaults.kind,
            defaults=msgspec.to_builtins(data.defaults),
            rows=len(news),
            idempotency_key=idempotency_key,
            request_hash=digest,
        )
        try:
            resources.jobs.create_many([first_stage(resources, new, now=now) for new in news], now=now, batch=batch)
        except IntegrityError:
            if idempotency_key and (earlier := resources.batches.by_key(user.id, idempotency_key)):
                return _replayed(resources, earlier, digest)  # lost a race with the same key
            raise Conflict("an external_id of these rows already names another of your jobs") from None
        for new in news:
            started(resources, new.id, new.kind, new.price)
        return Response(_answer(resources, _get(resources, user, batch.id)), status_code=201)

    @get("/", sync_to_thread=True, responses=docs.errors(400, 401))
    def list_batches(
        self,
        user: User,
        resources: Res,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        cursor: FromQuery[str | None] = None,
    ) -> BatchPage:
        """Your batches, newest first; pass `next_cursor` back as `cursor` for the next page."""
        found, next_cursor = resources.batches.list_for_user(user.id, limit=limit, cursor=cursor)
        return BatchPage([_answer(resources, batch) for batch in found], next_cursor)

    @get("/{batch_id:str}", sync_to_thread=True, responses=docs.errors(401, 404))
    def read_batch(self, batch_id: FromPath[str], user: User, resources: Res) -> BatchOut:
        return _answer(resources, _get(resources, user, batch_id))

    @get("/{batch_id:str}/jobs", sync_to_thread=True, responses=docs.errors(401, 404))
    def batch_jobs(
        self, batch_id: FromPath[str], user: User, resources: Res, status: FromQuery[JobStatus | None] = None
    ) -> list[RowOut]:
        """Each row's latest job (row index from 0), optionally only those in `status`."""
        batch = _get(resources, user, batch_id)
        return [
            RowOut(row, job.id, job.status, _error(job), job.retry_of, job.external_id)
            for row, job in sorted(_latest(resources, batch).items())
            if status is None or job.status is status
        ]

    @post("/{batch_id:str}/pause", status_code=200, sync_to_thread=True, responses=docs.errors(401, 404, 409))
    def pause_batch(self, batch_id: FromPath[str], user: User, resources: Res) -> BatchOut:
        """Nothing new starts (waiting rows leave their rooms); running rows finish."""
        batch = _get(resources, user, batch_id)
        _set(resources, batch, BatchStatus.RUNNING, BatchStatus.PAUSED)
        for job in _latest(resources, batch).values():
            if job.status is JobStatus.QUEUED:
                resources.rooms.remove(job.slot, job.id)
        return _answer(resources, _get(resources, user, batch_id))

    @post("/{batch_id:str}/resume", status_code=200, sync_to_thread=True, responses=docs.errors(401, 404, 409))
    def resume_batch(self, batch_id: FromPath[str], user: User, resources: Res) -> BatchOut:
        """Waiting rows go back to their rooms, in their old order."""
        batch = _get(resources, user, batch_id)
        _set(resources, batch, BatchStatus.PAUSED, BatchStatus.RUNNING)
        for job in _latest(resources, batch).values():
            if job.status is JobStatus.QUEUED:
                messages.enqueue(job.id, job.fence)
        return _answer(resources, _get(resources, user, batch_id))

    @post("/{batch_id:str}/cancel", status_code=200, sync_to_thread=True, responses=docs.errors(401, 404, 409))
    def cancel_batch(self, batch_id: FromPath[str], user: User, resources: Res) -> BatchOut:
        """Every row not yet ended is cancelled and refunded as `POST /v1/jobs/{id}/cancel` does (a row
        already copying its results finishes)."""
        batch = _get(resources, user, batch_id)
        if batch.status == BatchStatus.CANCELLED:
            raise Conflict("the batch is already cancelled", batch_id=batch.id)
        if not any(_set_from(resources, batch, s, BatchStatus.CANCELLED) for s in (BatchStatus.RUNNING, "paused")):
            raise Conflict("the batch changed meanwhile; try again", batch_id=batch.id)
        for job in _latest(resources, batch).values():
            if job.status in ACTIVE and job.status is not JobStatus.ARCHIVING:
                try:
                    cancel(resources, job)
                except Conflict:  # it ended, or reached archiving, meanwhile
                    continue
        return _answer(resources, _get(resources, user, batch_id))

    @post(
        "/{batch_id:str}/retry",
        status_code=200,
        sync_to_thread=True,
        responses=docs.errors(401, (402, "`insufficient_credits`: none of the rows is retried."), 404, 409),
    )
    def retry_batch(self, batch_id: FromPath[str], user: User, resources: Res, prices: Prices) -> BatchOut:
        """Failed, timed-out and cancelled rows run again as new jobs of the same rows, linked both
        ways (`retry_of`, `retried_by`), charged again in one transaction (402: none is)."""
        batch = _get(resources, user, batch_id)
        failed = [job for job in _latest(resources, batch).values() if job.status in RETRYABLE]
        if not failed:
            raise Conflict("no row of this batch failed, timed out or was cancelled", batch_id=batch.id)
        news = [again(resources, prices, job) for job in failed]
        now = datetime.now(UTC)
        resources.jobs.create_many([first_stage(resources, new, now=now) for new in news], now=now)
        _set_from(resources, batch, BatchStatus.CANCELLED, BatchStatus.RUNNING)  # a cancelled batch runs again
        for new in news:
            started(resources, new.id, new.kind, new.price)
        return _answer(resources, _get(resources, user, batch_id))

    @get("/{batch_id:str}/events", responses=docs.errors(401, 404))
    async def batch_events(self, batch_id: FromPath[str], user: User, resources: Res) -> ServerSentEvent:
        """The batch live (`Accept: text/event-stream`): `event: progress` with the batch as
        `GET /v1/batches/{id}` answers it whenever its status or a row's changes, a keep-alive comment
        every 15 s; the stream ends once every row has ended. Holds no thread while it waits."""
        batch = await anyio.to_thread.run_sync(lambda: _get(resources, user, batch_id))
        return ServerSentEvent(_progress(resources, batch.id))

    @get("/{batch_id:str}/archive", sync_to_thread=True, responses=docs.errors(401, 404))
    def batch_archive(self, batch_id: FromPath[str], user: User, resources: Res) -> Stream:
        """Every succeeded row's files and `manifest.csv`, as one zip streamed from storage."""
        batch = _get(resources, user, batch_id)
        latest = sorted(_latest(resources, batch).items())
        return Stream(
            archive.zipped(resources.storage, latest),
            media_type="application/zip",
            headers={"content-disposition": f'attachment; filename="batch-{batch.id}.zip"'},
        )


async def _progress(resources: Resources, batch_id: str) -> AsyncIterator[ServerSentEventMessage]:
    last: tuple[str, tuple[tuple[str, int], ...]] | None = None
    quiet_since, pause = anyio.current_time(), 0.2
    while True:
        answer = await anyio.to_thread.run_sync(lambda: _answer(resources, _stored(resources, batch_id)))
        seen = (str(answer.status), tuple(sorted(answer.counts.items())))
        if seen != last:
            last, quiet_since, pause = seen, anyio.current_time(), 0.2
            yield ServerSentEventMessage(data=msgspec.json.encode(answer).decode(), event="progress")
        if answer.finished == answer.rows:
            return
        if anyio.current_time() - quiet_since >= KEEP_ALIVE_S:
            quiet_since = anyio.current_time()
            yield ServerSentEventMessage(comment="keep-alive")
        await anyio.sleep(pause)
        pause = min(pause * 2, 1.0)


def _stored(resources: Resources, batch_id: str) -> Batch:
    batch = resources.batches.get(batch_id)
    assert batch is not None  # batches are never deleted
    return batch


def _rows(resources: Resources, prices: PriceList, user: CurrentUser, data: BatchIn) -> tuple[list[NewJob], str]:
    """Every row as a new job, checked as one job is; a bad row names itself: `rows[i].input.<field>`."""
    kind, batch_id = data.defaults.kind, new_id()
    hook = _hook(resources, data.defaults, user)
    images = Images(resources.images, resources.storage, user.id)
    news, digests = [], []
    for i, row in enumerate(data.rows):
        try:
            checked = validated_input(kind, batches.row_input(data.defaults.input, row.input), images)
        except InvalidInput as exc:
            raise InvalidInput(f"rows[{i}].{exc.field}", exc.message) from None
        terms = prices.quote(kind, checked)
        target = route(kind, checked)
        digests.append(request_hash(kind, checked, "batch", row.external_id, hook))
        news.append(
            NewJob(
                id=new_id(),
                user_id=user.id,
                kind=kind,
                status=JobStatus.QUEUED,
                input=checked,
                price=terms.price,
                vendor=target.vendor,
                model=target.model,
                deadline_at=datetime.now(UTC),
                deadline_s=terms.deadline_s,
                priority=scheduling.priority_class(kind, checked, batch=True),
                moderation_platform=user.moderation_platform or resources.settings.moderation_platform,
                external_id=row.external_id,
                webhook_url=hook[0],
                webhook_events=hook[1],
                batch_id=batch_id,
                batch_row=i,
            )
        )
    digest = request_hash(kind, {"rows": digests, "name": data.name})
    return news, digest


def _hook(resources: Resources, defaults: DefaultsIn, user: CurrentUser) -> tuple[str | None, str | None]:
    key_default = (user.webhook_url, user.webhook_events)
    try:
        return webhook_of(resources, defaults.webhook_url, defaults.webhook_events, default=key_default)
    except InvalidInput as exc:
        raise InvalidInput(f"defaults.{exc.field}", exc.message) from None


def _batch_limit(resources: Resources, user_id: str, *, now: datetime) -> tuple[str, int]:
    plan, until = resources.accounts.plans([user_id]).get(user_id, (None, None))
    return batch_limit(parse_plans(resources.effective().plans), plan, member=is_member(until, now=now))


def _replayed(resources: Resources, earlier: Batch, digest: str) -> Response[BatchOut]:
    if earlier.request_hash != digest:
        raise Conflict("this Idempotency-Key was already used with a different batch", batch_id=earlier.id)
    return Response(_answer(resources, earlier), status_code=201, headers={"Idempotent-Replayed": "true"})


def _get(resources: Resources, user: CurrentUser, batch_id: str) -> Batch:
    batch = resources.batches.get_for_user(user.id, batch_id) if is_id(batch_id) else None
    if batch is None:
        raise NotFound(f"no batch {batch_id}", batch_id=batch_id)
    return batch


def _set(resources: Resources, batch: Batch, expected: str, target: str) -> None:
    if not _set_from(resources, batch, expected, target):
        now = _answer(resources, batch).status
        raise Conflict(f"a {now} batch cannot be {target}", batch_id=batch.id, status=now)


def _set_from(resources: Resources, batch: Batch, expected: str, target: str) -> bool:
    return resources.jobs.set_batch_status(batch.id, batch.user_id, expected, target, now=datetime.now(UTC))


def _latest(resources: Resources, batch: Batch) -> dict[int, Job]:
    """Each row's newest job (a retried row's retry)."""
    return {job.batch_row or 0: job for job in resources.jobs.of_batch(batch.id)}


def _error(job: Job) -> ErrorOut | None:
    return ErrorOut(job.error_code, job.error_message or "") if job.error_code else None


def _answer(resources: Resources, batch: Batch) -> BatchOut:
    latest = list(_latest(resources, batch).values())
    statuses = [job.status for job in latest]
    status = batches.status_of(batch.status, statuses)
    done = batches.progress(statuses)
    ended = [job.finished_at for job in latest if job.status in TERMINAL and job.finished_at is not None]
    charged, refunded = resources.batches.money(batch.id)
    failed = [job.error_code for job in latest if job.status in REFUNDABLE]
    now = datetime.now(UTC)
    return BatchOut(
        id=batch.id,
        name=batch.name,
        kind=JobKind(batch.kind),
        status=status,
        rows=batch.rows,
        counts=dict(done.counts),
        finished=done.finished,
        progress=round(done.fraction, 4),
        credits_charged=charged,
        credits_refunded=refunded,
        failures=[FailureOut(g.code, g.count, g.retry_worthy) for g in batches.failures(failed)],
        created_at=batch.created_at,
        updated_at=batch.updated_at,
        finished_at=max(ended) if status is BatchStatus.COMPLETED and ended else None,
        estimated_completion_at=batches.estimate(
            batch.created_at, ended, batch.rows, now=now, running=status is BatchStatus.RUNNING
        ),
    )
