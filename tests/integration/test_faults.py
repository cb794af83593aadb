"""Faults while jobs run: worker processes SIGKILLed and restarted, Redis flushed once, vendors that
fail, answer "too busy" and lose answers. Afterwards every job has ended, every credit is accounted
for, no vendor ran more of our tasks at once than our limits allow, and every vendor task is known.

Real processes: the simulators on loopback (this process), the API (TestClient, this process), and
one `genq worker QUEUE` process per pool (two for generation) on the same database, Redis and S3.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import exists, func, select

from domain.jobs import REFUNDABLE, TERMINAL, Job, JobStatus
from infra.db import credit_ledger, job_events, jobs, vendor_attempts
from infra.embedded import free_port
from infra.resources import Resources
from infra.settings import Settings
from tests.faults import Pools, QuietDrops, overlap, serve, settings_env, settle
from tests.support import GARMENT, auth, make_user, wait_for
from vendors.sim.common import SimTask
from vendors.sim.hunyuan3d import PRO_QUERY, PRO_SUBMIT, Hunyuan3DSim
from vendors.sim.kie import CREATE_PATH, RECORD_PATH, KieSim
from vendors.sim.runninghub import RunningHubSim
from vendors.sim.tencent_ci import TencentCiSim

Client = TestClient[Litestar]

LIMITS = {"runninghub:pose12": 2, "kie:sora-2": 2, "kie:sora-2-pro": 1, "hunyuan3d:pro": 2}
ROOMS = (*LIMITS, "tencent_ci:goods_matting")
POOLS = ("generation-1", "generation-2", "polling", "archiving", "refunds", "maintenance")
PLANS = (None, None, "pro", "pro", "pro_plus", "enterprise")  # free users run one job at a time
JOBS_PER_USER = (5, 5, 10, 10, 12, 18)  # 60
CHAOS_S = 40.0  # faults stop after this long, or once every job has ended
KILL_EVERY_S = (2.0, 4.0)
FLUSH_AT_KILL = 3
RH_PHASES = (0.2, 0.8)  # queued_s, running_s
KIE_PHASES = (0.1, 0.2, 1.0)  # waiting_s, queuing_s, generating_s
HY_PHASES = (0.3, 1.0)  # queued_s, running_s
LATENCY_MS = (20.0, 250.0)  # every vendor call: a kill may well land while one is under way


@dataclass
class Sims:
    rh: RunningHubSim
    kie: KieSim
    hy: Hunyuan3DSim
    ci: TencentCiSim
    urls: dict[str, str]


@dataclass
class Chaos:
    """SIGKILLs a random pool every few seconds (and restarts it); flushes Redis once."""

    pools: Pools
    client: redis.Redis
    rng: random.Random
    calling: Callable[[], bool]  # a vendor call that may create a task is under way
    stop: threading.Event = field(default_factory=threading.Event)
    flushed_at: float | None = None
    flushed_wall: datetime | None = None
    began: float = 0.0
    last_fault: float = 0.0
    thread: threading.Thread | None = None
    error: Exception | None = None

    def start(self) -> None:
        self.began = time.monotonic()
        self.thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self.thread.start()

    def over(self, all_ended: Callable[[], object]) -> bool:
        """Redis was flushed, and the window is up or there is nothing left to hit."""
        if self.error is not None:
            raise self.error
        return self.flushed_at is not None and (time.monotonic() - self.began > CHAOS_S or bool(all_ended()))

    def _run(self) -> None:
        try:
            self._faults()
        except Exception as exc:  # the test's thread raises it (see `over`)
            self.error = exc

    def _faults(self) -> None:
        while not self.stop.wait(self.rng.uniform(*KILL_EVERY_S)):
            among = None
            if self.kills % 3 == 1 and self._call_under_way():  # every third kill: a submitter, mid-call
                among = [name for name in self.pools.names if name.startswith("generation")]
            if self.pools.kill_and_restart(self.rng, among) is None:
                continue
            self.last_fault = time.monotonic()
            if self.flushed_at is None and self.kills >= FLUSH_AT_KILL:
                self.client.flushdb()  # broker messages, waiting rooms and leases: all gone
                self.flushed_at = self.last_fault = time.monotonic()
                self.flushed_wall = datetime.now(UTC)

    def _call_under_way(self, within_s: float = 2.0) -> bool:
        deadline = time.monotonic() + within_s
        while not self.calling():
            if time.monotonic() > deadline or self.stop.wait(0.1):
                return False
        return True

    @property
    def kills(self) -> int:
        return sum(self.pools.kills.values())

    def end(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(30)


@pytest.fixture
def fault_sims(base_settings: Settings) -> Iterator[Sims]:
    """The four generation vendors at ~30 % failures (failed tasks, errors, busy answers, lost answers),
    each allowing at least as many tasks per account as our limits, with short timings."""
    rh = RunningHubSim(api_keys=[base_settings.runninghub_api_key.reveal()], seed=11)
    rh.configure(
        queued_s=RH_PHASES[0],
        running_s=RH_PHASES[1],
        job_fail_rate=0.2,
        failure_rate={"/task/openapi/ai-app/run": 0.2, "/task/openapi/outputs": 0.05},
        failure_kind="busy",
        lost_answer_rate={"/task/openapi/ai-app/run": 0.05, "/task/openapi/outputs": 0.05},
        concurrency_limit=LIMITS["runninghub:pose12"] + 1,
        latency_ms=LATENCY_MS,
        **small_media(rh.knobs_json()),
    )
    kie = KieSim(api_keys=[base_settings.kie_api_key.reveal()], seed=12)
    kie.configure(
        waiting_s=KIE_PHASES[0],
        queuing_s=KIE_PHASES[1],
        generating_s=KIE_PHASES[2],
        job_fail_rate=0.2,
        failure_rate={CREATE_PATH: 0.15, RECORD_PATH: 0.05},
        failure_kind="http_500",
        lost_answer_rate={CREATE_PATH: 0.08, RECORD_PATH: 0.05},
        rate_limit=None,
        concurrency_limit=LIMITS["kie:sora-2"] + LIMITS["kie:sora-2-pro"] + 1,
        latency_ms=LATENCY_MS,
        **small_media(kie.knobs_json()),
    )
    secret = base_settings.tencent_secret_key.reveal()
    hy = Hunyuan3DSim(credentials={base_settings.tencent_secret_id: secret}, seed=13)
    hy.configure(
        queued_s=HY_PHASES[0],
        running_s=HY_PHASES[1],
        job_fail_rate=0.2,
        failure_rate={PRO_SUBMIT: 0.15, PRO_QUERY: 0.05},
        failure_kind="RequestLimitExceeded",
        lost_answer_rate={PRO_SUBMIT: 0.08, PRO_QUERY: 0.05},
        pro_concurrency=LIMITS["hunyuan3d:pro"] + 1,
        latency_ms=LATENCY_MS,
        **small_media(hy.knobs_json()),
    )
    ci = TencentCiSim(credentials={base_settings.tencent_secret_id: secret}, seed=14)
    ci.configure(failure_rate=0.15, failure_kind="http_500", latency_ms=LATENCY_MS)
    quiet = QuietDrops()
    logging.getLogger("uvicorn.error").addFilter(quiet)
    handlers = {"rh": rh.handle, "kie": kie.handle, "hy": hy.handle, "ci": ci.handle}
    servers = {name: serve(handle, free_port()) for name, handle in handlers.items()}
    yield Sims(rh, kie, hy, ci, {name: server.url for name, server in servers.items()})
    for server in servers.values():
        server.stop()
    logging.getLogger("uvicorn.error").removeFilter(quiet)


def small_media(knobs: dict[str, object]) -> dict[str, object]:
    """Outputs at a tenth of the vendors' sizes, for the simulators that make real-sized media."""
    return {"media_scale": 0.1} if "media_scale" in knobs else {}


@pytest.fixture
def pools(base_settings: Settings, fault_sims: Sims, tmp_path: Path) -> Iterator[Pools]:
    """The worker pools as processes, pointed at the simulators; every one is gone after the test."""
    settings = base_settings.with_(
        runninghub_base_url=fault_sims.urls["rh"],
        kie_base_url=fault_sims.urls["kie"],
        kie_callback_url="",
        hunyuan3d_base_url=fault_sims.urls["hy"],
        ci_bucket_url=fault_sims.urls["ci"],
        runninghub_concurrency=LIMITS["runninghub:pose12"],
        kie_concurrency_sora_2=LIMITS["kie:sora-2"],
        kie_concurrency_sora_2_pro=LIMITS["kie:sora-2-pro"],
        hunyuan3d_concurrency=LIMITS["hunyuan3d:pro"],
        ci_concurrency=3,
        vendor_timeout_s=5.0,
        retry_waits_s="0.2,0.4,0.8",
        vendor_busy_pause_s=0.5,
        poll_schedule_image="0:0.3",
        poll_schedule_video_720p="0:0.3",
        poll_schedule_video_1080p="0:0.3",
        poll_schedule_3d="0:0.3",
        slot_lease_ttl_s=6.0,  # longer than any vendor task here: a dead submitter's task ends first
        reconcile_interval_s=0.5,
        stale_queued_s=2.0,
        stale_processing_s=3.0,
        # A re-drive sends the job's message again at the back of the queue (the one queued before
        # is stale from then on), so this bound must stay above how long the queue may keep one.
        stale_archiving_s=8.0,
        stale_refund_s=2.0,
        degrade_window_s=5.0,
        worker_threads=4,
        log_level="info",
        log_format="json",
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    the_pools = Pools(settings_env(settings), logs, POOLS, marker=uuid.uuid4().hex)
    yield the_pools
    the_pools.stop(timeout_s=5)  # when the test failed half-way; a no-op after its own stop


@pytest.fixture
def chaos(pools: Pools, redis_client: redis.Redis, resources: Resources) -> Iterator[Chaos]:
    """The faults, not started yet; stopped before the pools are (no restart after their stop)."""
    the_chaos = Chaos(pools, redis_client, random.Random(7), calling=lambda: _calling(resources))
    yield the_chaos
    the_chaos.end()


def job_bodies(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """A mix of every kind: RunningHub pose12, KIE sora-2 and sora-2-pro, Hunyuan 3D, Tencent CI."""
    bodies = []
    for _ in range(count):
        kind = rng.choices(["model_pose12", "video", "model_3d", "basic_clean"], weights=[30, 30, 17, 23])[0]
        if kind == "model_pose12":
            job_input: dict[str, Any] = {
                "image_url": GARMENT,
                "scene": rng.choice(["street", "studio", "indoor"]),
                "category": rng.choice(["shoes", "dress", "hoodie", "coat"]),
            }
        elif kind == "video":
            model = rng.choices(["sora-2", "sora-2-pro"], weights=[2, 1])[0]  # pro's room holds one at a time
            resolution = rng.choice(["720p", "1080p"]) if model == "sora-2-pro" else "720p"
            job_input = {"model": model, "resolution": resolution, "duration": rng.choice([10, 15]), "prompt": "waves"}
        elif kind == "model_3d":
            job_input = {"version": rng.choice(["3.0", "3.1"]), "prompt": "a wooden chair"}
        else:
            job_input = {"image_url": GARMENT}
        priority = "batch" if rng.random() < 0.2 else "interactive"
        bodies.append({"kind": kind, "input": job_input, "priority": priority})
    return bodies


def test_jobs_end_and_money_and_vendor_limits_hold_through_killed_workers_and_a_flushed_redis(
    api: Client,
    resources: Resources,
    fault_sims: Sims,
    pools: Pools,
    chaos: Chaos,
    base_settings: Settings,
) -> None:
    rng = random.Random(20240611)
    users = [make_user(resources, 5000, f"1390000000{i}", plan=plan) for i, plan in enumerate(PLANS)]
    work = [(user, body) for user, n in zip(users, JOBS_PER_USER, strict=True) for body in job_bodies(rng, n)]
    rng.shuffle(work)
    at = {"boot": time.monotonic()}  # when each phase began (monotonic seconds)
    pools.start_all()
    wait_for(pools.all_serving, timeout_s=90, what="every pool to start")

    at["start"] = time.monotonic()
    chaos.start()
    ids = [_submit(api, user, body) for user, body in work[:36]]
    wait_for(lambda: chaos.kills >= 2, timeout_s=60, what="the first kills")
    ids += [_submit(api, user, body) for user, body in work[36:]]
    assert settle(lambda: chaos.over(lambda: _all_ended(resources, ids)), timeout_s=CHAOS_S + 60), "no flush"
    chaos.end()
    settle(lambda: _quiet(resources, ids), timeout_s=180)  # if not, the asserts below say what is missing
    at |= {"faults_over": chaos.last_fault, "quiet": time.monotonic()}
    slots = settle(lambda: _rooms_empty(resources), timeout_s=30)
    exited = pools.exited()
    forced = pools.stop()
    leftovers = pools.alive()
    finished = [job for job_id in ids if (job := resources.jobs.get(job_id)) is not None]
    report = _report(resources, fault_sims, base_settings, finished, flushed=chaos.flushed_wall)
    _print_summary(report, chaos, at, forced)

    assert exited == {}, "pools that died without being killed"
    assert leftovers == [], "worker processes outlived the test"
    assert len(finished) == len(ids) == 60, "jobs lost"
    assert [(job.id, str(job.status)) for job in finished if not job.terminal] == [], "jobs stuck"
    assert slots, {room: resources.rooms.in_flight(room) for room in ROOMS}
    assert report.money_errors == []
    assert report.balance_errors == []
    assert report.reconstruction_errors == {}, "the vendor tasks' intervals are not what the simulators count"
    assert report.slotted_over_limit == {}, "our own tasks ran at a vendor beyond our limit"
    assert report.account_over_limit == {}, "a vendor account ran more than our limits plus unslotted tasks"
    assert report.orphans_beyond_unknown == {}, "vendor tasks that genq neither recorded nor counted"
    assert report.missing_results == []


def _submit(api: Client, user: Any, body: dict[str, Any]) -> str:
    response = api.post("/v1/jobs", json=body, headers=auth(user))
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _all_ended(resources: Resources, ids: list[str]) -> bool:
    """Every job that exists is in a terminal state (one query: this probe runs often)."""
    open_states = [s.value for s in JobStatus if s not in TERMINAL]
    query = select(func.count()).where(jobs.c.id.in_(ids), jobs.c.status.in_(open_states))
    with resources.engine.connect() as conn:
        return conn.execute(query).scalar_one() == 0


def _quiet(resources: Resources, ids: list[str]) -> bool:
    """Every job has ended and every refund owed has been made (refunds follow the end)."""
    refunded = exists().where(credit_ledger.c.job_id == jobs.c.id, credit_ledger.c.kind == "refund")
    owed = select(func.count()).where(jobs.c.id.in_(ids), jobs.c.status.in_([s.value for s in REFUNDABLE]), ~refunded)
    with resources.engine.connect() as conn:
        return _all_ended(resources, ids) and conn.execute(owed).scalar_one() == 0


def _calling(resources: Resources) -> bool:
    query = select(vendor_attempts.c.job_id).where(vendor_attempts.c.outcome == "calling").limit(1)
    with resources.engine.connect() as conn:
        return conn.execute(query).first() is not None


def _rooms_empty(resources: Resources) -> bool:
    """No slot is held any more: every lease was released, or lapsed."""
    return all(resources.rooms.in_flight(room) == 0 for room in ROOMS)


# --- what is checked -------------------------------------------------------------------------------


@dataclass
class Report:
    statuses: Counter[str]
    requeues: Counter[str]  # submitting -> queued, by reason
    stray_objects: int  # result objects no job points to (left by archive attempts that were killed)
    admitted_after_flush_s: float | None  # from the flush to the next admission: rooms rebuilt, work resumed
    unknown: dict[str, int]
    tasks: dict[str, int]
    max_concurrent: dict[str, tuple[int, int]]  # account -> (the vendor's count, our limit)
    peaks: dict[str, tuple[int, int, int]]  # room -> (peak of our slotted tasks, of all, unslotted tasks)
    money_errors: list[str]
    balance_errors: list[str]
    reconstruction_errors: dict[str, tuple[int, int]]
    slotted_over_limit: dict[str, tuple[int, int]]
    account_over_limit: dict[str, tuple[int, int]]
    orphans_beyond_unknown: dict[str, tuple[int, int]]
    missing_results: list[str]


def _report(
    resources: Resources, sims: Sims, settings: Settings, finished: list[Job], *, flushed: datetime | None
) -> Report:
    by_id = {job.id: job for job in finished}
    with resources.engine.connect() as conn:
        readmitted = conn.execute(
            select(func.min(job_events.c.at)).where(
                job_events.c.to_status == JobStatus.SUBMITTING, job_events.c.at > (flushed or datetime.now(UTC))
            )
        ).scalar_one_or_none()
        ledger = conn.execute(
            select(credit_ledger.c.job_id, credit_ledger.c.kind, func.count())
            .where(credit_ledger.c.job_id.in_(list(by_id)))
            .group_by(credit_ledger.c.job_id, credit_ledger.c.kind)
        ).all()
        unknown: dict[str, int] = {
            vendor: int(n)
            for vendor, n in conn.execute(
                select(vendor_attempts.c.vendor, func.count())
                .where(vendor_attempts.c.outcome == "unknown")
                .group_by(vendor_attempts.c.vendor)
            )
        }
        slotted = {t for t in conn.execute(select(jobs.c.vendor_task_id)).scalars() if t}
        attempted = {t for t in conn.execute(select(vendor_attempts.c.task_id)).scalars() if t}
        users = set(conn.execute(select(jobs.c.user_id).where(jobs.c.id.in_(list(by_id)))).scalars())
        requeues = Counter(
            str((detail or {}).get("reason"))
            for detail in conn.execute(
                select(job_events.c.detail).where(
                    job_events.c.job_id.in_(list(by_id)),
                    job_events.c.from_status == JobStatus.SUBMITTING,
                    job_events.c.to_status == JobStatus.QUEUED,
                )
            ).scalars()
        )

    counts = {(job_id, kind): int(n) for job_id, kind, n in ledger}
    money_errors = []
    for job in finished:
        charges, refunds = counts.get((job.id, "charge"), 0), counts.get((job.id, "refund"), 0)
        if charges != 1 or refunds != (0 if job.status is JobStatus.SUCCEEDED else 1):
            money_errors.append(f"{job.id} {job.status}: {charges} charge(s), {refunds} refund(s)")
    balance_errors = [
        f"{user}: balance {resources.accounts.balance(user)} != ledger {resources.accounts.ledger_sum(user)}"
        for user in users
        if resources.accounts.balance(user) != resources.accounts.ledger_sum(user)
    ]

    rh_key, kie_key = settings.runninghub_api_key.reveal(), settings.kie_api_key.reveal()
    rh_tasks, kie_tasks, hy_tasks = sims.rh.created_tasks(), sims.kie.created_tasks(), sims.hy.created_tasks()
    kie_room = {t.task_id: "kie:sora-2-pro" if "sora-2-pro" in t.task_id else "kie:sora-2" for t in kie_tasks}
    rooms: dict[str, tuple[list[SimTask], tuple[float, ...]]] = {
        "runninghub:pose12": (rh_tasks, RH_PHASES),
        "kie:sora-2": ([t for t in kie_tasks if kie_room[t.task_id] == "kie:sora-2"], KIE_PHASES),
        "kie:sora-2-pro": ([t for t in kie_tasks if kie_room[t.task_id] == "kie:sora-2-pro"], KIE_PHASES),
        "hunyuan3d:pro": (hy_tasks, HY_PHASES),
    }
    # Tasks that ran under one of our slots (the accepted task of a job) never exceed the room's limit.
    slotted_over_limit, peaks = {}, {}
    for room, (tasks, phases) in rooms.items():
        peak = overlap([t for t in tasks if t.task_id in slotted], phases)
        peaks[room] = (peak, overlap(tasks, phases), sum(1 for t in tasks if t.task_id not in slotted))
        if peak > LIMITS[room]:
            slotted_over_limit[room] = (peak, LIMITS[room])
    # A vendor account's own count: our limits (KIE's one key serves both models, so the sum of the
    # two), plus tasks that held no slot of ours (lost answers, dead submitters, abandoned tasks).
    accounts = {
        "runninghub": (sims.rh.max_concurrent(rh_key), LIMITS["runninghub:pose12"], rh_tasks),
        "kie": (sims.kie.max_concurrent(kie_key), LIMITS["kie:sora-2"] + LIMITS["kie:sora-2-pro"], kie_tasks),
        "hunyuan3d": (
            sims.hy.max_concurrent(settings.tencent_secret_id, "pro"),
            LIMITS["hunyuan3d:pro"],
            hy_tasks,
        ),
    }
    # The intervals above are rebuilt from each task's creation and the phase knobs: they must give
    # the simulators' own peaks (RunningHub's cancels end tasks early, so there at least as many).
    reconstruction_errors = {}
    for vendor, (peak, _, tasks) in accounts.items():
        rebuilt = overlap(tasks, {"runninghub": RH_PHASES, "kie": KIE_PHASES, "hunyuan3d": HY_PHASES}[vendor])
        if rebuilt < peak or (rebuilt != peak and vendor != "runninghub"):
            reconstruction_errors[vendor] = (rebuilt, peak)
    account_over_limit = {}
    for vendor, (peak, limit, tasks) in accounts.items():
        unslotted = sum(1 for t in tasks if t.task_id not in slotted)
        if peak > limit + unslotted:
            account_over_limit[vendor] = (peak, limit + unslotted)
    # Every vendor task is recorded, cancelled by genq, or covered by a counted unknown outcome.
    orphans_beyond_unknown = {}
    for vendor, (_, _, tasks) in accounts.items():
        orphans = sum(1 for t in tasks if t.task_id not in slotted | attempted and not t.cancelled)
        if orphans > unknown.get(vendor, 0):
            orphans_beyond_unknown[vendor] = (orphans, unknown.get(vendor, 0))
    missing_results = [
        f"{job.id}: {f.key}"
        for job in finished
        if job.status is JobStatus.SUCCEEDED
        for f in (job.results or ())
        if not resources.storage.exists(f.key)
    ] + [f"{job.id}: no results" for job in finished if job.status is JobStatus.SUCCEEDED and not job.results]

    published = {f.key for job in finished for f in job.results}
    stray = [
        key
        for user in users
        for key in resources.storage.keys(f"results/{user}/")
        if key not in published and key.split("/")[2] in by_id
    ]
    return Report(
        statuses=Counter(str(job.status) for job in finished),
        requeues=requeues,
        stray_objects=len(stray),
        admitted_after_flush_s=(readmitted - flushed).total_seconds() if readmitted and flushed else None,
        unknown=unknown,
        tasks={vendor: len(tasks) for vendor, (_, _, tasks) in accounts.items()},
        max_concurrent={vendor: (peak, limit) for vendor, (peak, limit, _) in accounts.items()},
        peaks=peaks,
        money_errors=money_errors,
        balance_errors=balance_errors,
        reconstruction_errors=reconstruction_errors,
        slotted_over_limit=slotted_over_limit,
        account_over_limit=account_over_limit,
        orphans_beyond_unknown=orphans_beyond_unknown,
        missing_results=missing_results,
    )


def _print_summary(report: Report, chaos: Chaos, at: dict[str, float], forced: list[str]) -> None:
    kills = ", ".join(f"{name} x{n}" for name, n in sorted(chaos.pools.kills.items()))
    flushed = (chaos.flushed_at or float("nan")) - at["start"]
    lines = [
        f"fault test summary (the pools took {at['start'] - at['boot']:.1f} s to start)",
        f"  jobs: {dict(sorted(report.statuses.items()))}",
        f"  kills: {chaos.kills} ({kills}); redis flushed at {flushed:.1f} s, the next job admitted"
        f" {report.admitted_after_flush_s or float('nan'):.1f} s later",
        f"  unknown outcomes: {report.unknown or 0}; vendor tasks: {report.tasks}",
        f"  back to the queue: {dict(report.requeues)}; stray result objects: {report.stray_objects}",
        "  vendor max concurrent (seen, our limit): "
        + ", ".join(f"{v} {seen}/{limit}" for v, (seen, limit) in report.max_concurrent.items()),
        "  per room (peak of slotted tasks/limit, of all tasks, unslotted tasks): "
        + ", ".join(f"{r} {p}/{LIMITS[r]} {a} {u}" for r, (p, a, u) in report.peaks.items()),
        f"  faults for {at['faults_over'] - at['start']:.1f} s; every job ended {at['quiet'] - at['faults_over']:.1f} s"
        f" after the last fault (recovery); {at['quiet'] - at['start']:.1f} s from the first job",
    ]
    if forced:
        lines.append(f"  pools killed at the end (SIGTERM ignored for 30 s): {forced}")
    print("\n".join(lines))
