"""The user's workbench at `/app` (seed 003's front end).

The pages are rendered here; what they show and do comes from the JSON API itself, mounted again at
`/app/v1/...` (the same handlers: jobs, batches, orders, membership, uploads, pricing, event streams)
with the session cookie standing for `Authorization` and the CSRF header required on every unsafe
call. So no rule lives twice: a price, a charge or a cancel is what `/v1` does. Served only here:
a payment code drawn as a QR image, and a job's files as one zip.
"""

from __future__ import annotations

import io
from typing import Any

import segno
from litestar import Request, Response, Router, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect, Stream, Template
from litestar.types import ControllerRouterHandler

from api import archive
from api.accounts import create_upload, list_plans, membership
from api.auth import CurrentUser
from api.batches import BatchesController
from api.events import job_events
from api.jobs import JobsController
from api.payments import OrdersController
from api.pricing import pricing
from api.web.pages import json_router, page_router, render
from api.web.session import WebAuth, local_path, session_handlers
from domain.errors import NotFound
from domain.jobs import Job, JobStatus
from infra.paging import is_id
from infra.resources import Resources

User = NamedDependency[CurrentUser]
Res = NamedDependency[Resources]

# The API's handlers the pages' scripts call, at /app/v1/... (see the module's docstring).
API_FOR_PAGES: list[ControllerRouterHandler] = [
    JobsController,
    job_events,
    BatchesController,
    OrdersController,
    list_plans,
    membership,
    create_upload,
    pricing,
]


def routers(auth: WebAuth) -> list[Router]:
    open_session, logout = session_handlers(auth)

    @get("/login")
    async def login_page(request: Request[Any, Any, Any]) -> Template | Redirect:
        target = local_path(request.query_params.get("next"))
        if await auth.user_of(request) is not None:
            return Redirect(target, status_code=303)
        return render(auth, request, "login.html", next=target)

    @get("/")
    async def home(request: Request[Any, Any, Any], user: User) -> Template:
        return render(auth, request, "workbench/home.html")

    @get("/jobs")
    async def jobs_page(request: Request[Any, Any, Any], user: User) -> Template:
        return render(auth, request, "workbench/jobs.html")

    @get("/jobs/{job_id:str}", sync_to_thread=True)
    def job_page(request: Request[Any, Any, Any], job_id: FromPath[str], user: User, resources: Res) -> Template:
        job = _own_job(resources, user, job_id)
        return render(auth, request, "workbench/job.html", job_id=job.id)

    @get("/jobs/{job_id:str}/files.zip", sync_to_thread=True)
    def job_files(job_id: FromPath[str], user: User, resources: Res) -> Stream:
        """Every file of a succeeded job, as one zip streamed from storage (as a batch's is)."""
        job = _own_job(resources, user, job_id)
        if job.status is not JobStatus.SUCCEEDED or job.results_expired_at is not None:
            raise NotFound("this job has no files to download", job_id=job.id)
        return Stream(
            archive.zipped(resources.storage, [(0, job)]),
            media_type="application/zip",
            headers={"content-disposition": f'attachment; filename="job-{job.id}.zip"'},
        )

    @get("/batches")
    async def batches_page(request: Request[Any, Any, Any], user: User) -> Template:
        return render(auth, request, "workbench/batches.html")

    @get("/batches/{batch_id:str}", sync_to_thread=True)
    def batch_page(request: Request[Any, Any, Any], batch_id: FromPath[str], user: User, resources: Res) -> Template:
        batch = resources.batches.get_for_user(user.id, batch_id) if is_id(batch_id) else None
        if batch is None:
            raise NotFound(f"no batch {batch_id}", batch_id=batch_id)
        return render(auth, request, "workbench/batch.html", batch_id=batch.id)

    @get("/orders/{order_id:str}/qr.svg", sync_to_thread=True)
    def order_qr(order_id: FromPath[str], user: User, resources: Res) -> Response[bytes]:
        """The order's payment code (WeChat Pay `code_url`, Alipay `qr_code`) as a QR image."""
        order = resources.membership.order(order_id) if is_id(order_id) else None
        payment = order.payment if order is not None and order.user_id == user.id else None
        text = (payment or {}).get("code_url") or (payment or {}).get("qr_code")
        if not isinstance(text, str):
            raise NotFound(f"no payment code for order {order_id}", order_id=order_id)
        return Response(_qr_svg(text), media_type="image/svg+xml", headers={"cache-control": "private, max-age=600"})

    @get("/{rest:path}")
    async def unknown(rest: FromPath[str], user: User) -> None:
        raise NotFound(f"no page /app{rest}")

    public = page_router(auth, "/app", [login_page, logout])
    pages = [home, jobs_page, job_page, job_files, batches_page, batch_page, order_qr, unknown]
    signed_in = page_router(auth, "/app", pages, guards=[auth.signed_in])
    api = json_router(auth, "/app", [open_session, *API_FOR_PAGES])
    return [public, signed_in, api]


def _own_job(resources: Resources, user: CurrentUser, job_id: str) -> Job:
    job = resources.jobs.get_for_user(user.id, job_id) if is_id(job_id) else None
    if job is None:
        raise NotFound(f"no job {job_id}", job_id=job_id)
    return job


def _qr_svg(text: str) -> bytes:
    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="svg", scale=6, border=2, title="payment code")
    return out.getvalue()
