"""Every actor on a StubBroker with the worker joined: its happy path, and a duplicate of each of its
messages changing nothing (at-least-once delivery, exactly-once effects; STYLE.md, "An actor").

A scenario drives the API and drains every queue; the duplicate test then delivers again a copy of
every message the actor was sent, drains, and compares what the database, the rooms, storage, the
vendor and the webhook receiver hold with what they held before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dramatiq
import httpx
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import q_name
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import Table, select

from domain.jobs import JobStatus
from infra.db import (
    credit_ledger,
    job_events,
    jobs,
    moderation_audits,
    sms_codes,
    vendor_attempts,
    webhook_attempts,
    webhook_deliveries,
)
from infra.resources import Resources
from tests.support import HookReceiver, Traffic, auth, make_user, pose12_body, wait_for
from vendors.sim.runninghub import RunningHubSim
from vendors.sim.tencent_sms import SmsSim
from vendors.sim.wechat import WechatSim
from workers import broker as workers_broker
from workers import messages
from workers.runtime import Policy, Runtime

Client = TestClient[Litestar]
Pushes = list[tuple[str, dict[str, str], bytes]]
ROOM = "runninghub:pose12"
PHONE = "+8613800138000"
TABLES: tuple[Table, ...] = (
    jobs,
    job_events,
    credit_ledger,
    vendor_attempts,
    webhook_deliveries,
    webhook_attempts,
    moderation_audits,
    sms_codes,
)


@dataclass
class World:
    """What a scenario drives and what it is judged by."""

    api: Client
    resources: Resources
    runtime: Runtime
    broker: StubBroker
    sent: Traffic
    drain: Callable[[], None]
    rh_sim: RunningHubSim
    wechat_sim: WechatSim
    wechat_pushes: Pushes
    sms_sim: SmsSim
    hooks: HookReceiver

    def submit(self, body: dict[str, Any], credits: int = 1) -> str:
        user = make_user(self.resources, credits=credits)
        resp = self.api.post("/v1/jobs", json=body, headers=auth(user))
        assert resp.status_code == 202, resp.text
        return str(resp.json()["id"])

    def status(self, job_id: str) -> JobStatus:
        job = self.resources.jobs.get(job_id)
        assert job is not None
        return job.status

    def deliver_pushes(self) -> None:
        """Post what the WeChat simulator pushed to the API's callback, as WeChat would."""
        self.wechat_sim.tick()
        while self.wechat_pushes:
            url, headers, body = self.wechat_pushes.pop(0)
            target = httpx.URL(url)
            assert self.api.post(target.path, params=dict(target.params), headers=headers, content=body).is_success

    def footprint(self) -> dict[str, Any]:
        """Everything a run of an actor may change."""
        with self.resources.engine.connect() as conn:
            rows = {t.name: sorted(map(repr, conn.execute(select(t)).all())) for t in TABLES}
        return {
            **rows,
            "rooms": sorted(self.resources.redis.keys("genq:room*")),
            "in_flight": self.resources.rooms.in_flight(ROOM),
            "objects": self.resources.storage.keys(""),
            "vendor_tasks": len(self.rh_sim.created_tasks()),
            "hooks": len(self.hooks.received()),
            "texts": len(self.sms_sim.messages()),
        }

    def deliver_again(self, actor_name: str) -> int:
        """A copy of every message `actor_name` was sent, delivered now; how many."""
        copies = self.sent.of(actor_name)
        for message in copies:
            again = dramatiq.Message(
                queue_name=q_name(message.queue_name),
                actor_name=message.actor_name,
                args=message.args,
                kwargs=message.kwargs,
                options={},
            )
            self.broker.enqueue(again)
        self.drain()
        return len(copies)


@pytest.fixture
def world(
    api: Client,
    resources: Resources,
    runtime_: Runtime,
    broker: StubBroker,
    sent: Traffic,
    drain: Callable[[], None],
    rh_sim: RunningHubSim,
    wechat_sim: WechatSim,
    wechat_pushes: Pushes,
    sms_sim: SmsSim,
    hooks: HookReceiver,
) -> World:
    return World(api, resources, runtime_, broker, sent, drain, rh_sim, wechat_sim, wechat_pushes, sms_sim, hooks)


# --- scenarios: each ends drained, with every actor it names having run ----------------------------


def pose12_with_webhooks(w: World) -> str:
    """enqueue_job, submit_job, poll_job, archive_job and deliver, on a job that succeeds."""
    job_id = w.submit(pose12_body() | {"webhook_url": w.hooks.url(), "webhook_events": "all"})
    w.drain()
    return job_id


def failed_job(w: World) -> str:
    """refund_job: the vendor fails the task."""
    w.rh_sim.configure(job_fail_rate=1.0)
    job_id = w.submit(pose12_body())
    w.drain()
    return job_id


def admitted_after_a_pause(w: World) -> str:
    """admit_room: the job waits in a paused room; the room's admission is sent when it resumes."""
    w.resources.rooms.pause(ROOM, ms=3_600_000)
    job_id = w.submit(pose12_body())
    w.drain()
    assert w.status(job_id) is JobStatus.QUEUED
    w.resources.rooms.resume(ROOM)
    messages.admit(ROOM)
    w.drain()
    return job_id


def cancelled_at_the_vendor(w: World) -> str:
    """cancel_task: the owner cancels a job the vendor is running."""
    w.rh_sim.configure(running_s=3600)
    w.runtime.policy = Policy.from_settings(w.runtime.settings.with_(poll_schedule_image="0:0.05"))
    user = make_user(w.resources, credits=1)
    job_id = str(w.api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"])
    wait_for(lambda: w.status(job_id) is JobStatus.PROCESSING, what="the vendor to run the job")
    assert w.api.post(f"/v1/jobs/{job_id}/cancel", headers=auth(user)).status_code == 200
    w.drain()
    return job_id


def moderated(w: World) -> str:
    """check_job and record_verdict: a prompt checked by WeChat before the video runs."""
    settings = w.resources.settings.with_(audit_enabled=True)
    w.resources.settings = w.runtime.settings = settings
    w.runtime.policy = Policy.from_settings(settings)
    body = {"model": "sora-2", "resolution": "720p", "duration": 10, "prompt": "a calm lake"}
    job_id = w.submit({"kind": "video", "input": body}, credits=15)
    w.drain()
    w.deliver_pushes()
    w.drain()
    return job_id


def login_code(w: World) -> str:
    """send_login_code: a code texted for a phone login."""
    assert w.api.post("/v1/auth/sms-code", json={"phone": PHONE}).status_code == 202
    w.drain()
    return PHONE


SCENARIOS: dict[str, Callable[[World], str]] = {
    "generation.enqueue_job": pose12_with_webhooks,
    "generation.submit_job": pose12_with_webhooks,
    "polling.poll_job": pose12_with_webhooks,
    "archiving.archive_job": pose12_with_webhooks,
    "webhooks.deliver": pose12_with_webhooks,
    "refunds.refund_job": failed_job,
    "generation.admit_room": admitted_after_a_pause,
    "polling.cancel_task": cancelled_at_the_vendor,
    "moderation.check_job": moderated,
    "moderation.record_verdict": moderated,
    "accounts.send_login_code": login_code,
}


def test_every_actor_has_a_scenario() -> None:
    assert {a.actor_name for a in workers_broker.ACTORS} == set(SCENARIOS)


# --- happy paths ---------------------------------------------------------------------------------


def test_a_job_is_submitted_polled_archived_and_announced(world: World) -> None:
    job_id = pose12_with_webhooks(world)

    job = world.resources.jobs.get(job_id)
    assert job is not None and job.status is JobStatus.SUCCEEDED
    assert [f.key for f in job.results] == [f"results/{job.user_id}/{job_id}/1/{i}.png" for i in range(12)]
    assert all(world.resources.storage.read(f.key)[:4] == b"\x89PNG" for f in job.results[:1])
    assert len(world.rh_sim.created_tasks()) == 1
    assert world.resources.rooms.in_flight(ROOM) == 0
    # One delivery per state entered. Arrival order is not promised (each event is sent as its state
    # is entered, by its own message; a retried one arrives late): `timestamp` orders them.
    lifecycle = ["job.queued", "job.submitting", "job.processing", "job.archiving", "job.succeeded"]
    by_type = {body["type"]: body for body in (hook.json() for hook in world.hooks.received())}
    assert len(world.hooks.received()) == len(lifecycle) and sorted(by_type) == sorted(lifecycle)
    stamps = [datetime.fromisoformat(by_type[event]["timestamp"]) for event in lifecycle]
    assert stamps == sorted(stamps)


def test_a_failed_job_is_refunded(world: World) -> None:
    job_id = failed_job(world)

    job = world.resources.jobs.get(job_id)
    assert job is not None and job.status is JobStatus.FAILED
    assert world.resources.accounts.balance(job.user_id) == 1
    assert [kind for _, kind, _ in world.resources.accounts.ledger(job.user_id)].count("refund") == 1


def test_a_resumed_room_admits_its_waiting_job(world: World) -> None:
    job_id = admitted_after_a_pause(world)

    assert world.status(job_id) is JobStatus.SUCCEEDED
    assert len(world.rh_sim.created_tasks()) == 1


def test_a_cancelled_running_job_is_cancelled_at_the_vendor_and_frees_its_slot(world: World) -> None:
    job_id = cancelled_at_the_vendor(world)

    assert world.status(job_id) is JobStatus.CANCELLED
    assert [task.cancelled for task in world.rh_sim.created_tasks()] == [True]
    assert world.resources.rooms.in_flight(ROOM) == 0


def test_a_moderated_prompt_passes_and_the_job_runs(world: World) -> None:
    job_id = moderated(world)

    assert world.status(job_id) is JobStatus.SUCCEEDED
    assert [a.decision for a in world.resources.audits.for_job(job_id)] == ["pass"]
    assert ("pending_audit", "queued") in world.resources.jobs.events(job_id)


def test_a_login_code_is_texted_and_logs_in(world: World) -> None:
    phone = login_code(world)

    code = world.sms_sim.last_code(phone)
    login = world.api.post("/v1/auth/login", json={"phone": phone, "code": code})
    assert login.status_code == 200, login.text
    assert "access_token" in login.json()


# --- duplicates ----------------------------------------------------------------------------------


@pytest.mark.parametrize("actor_name", sorted(set(SCENARIOS) - {"accounts.send_login_code"}))
def test_a_duplicate_message_changes_nothing(world: World, actor_name: str) -> None:
    SCENARIOS[actor_name](world)
    before = world.footprint()

    delivered = world.deliver_again(actor_name)

    assert delivered >= 1
    assert world.footprint() == before


def test_a_duplicate_login_message_texts_no_second_code_and_the_first_logs_in(world: World) -> None:
    """Not fenced (no job): a copy makes a code of its own, which the SMS vendor refuses to text
    within its 30 s per phone; the one code texted still logs in, once."""
    phone = login_code(world)
    code = world.sms_sim.last_code(phone)

    world.deliver_again("accounts.send_login_code")

    assert world.sms_sim.last_code(phone) == code  # the last one delivered is still the first
    login = world.api.post("/v1/auth/login", json={"phone": phone, "code": code})
    assert login.status_code == 200, login.text
