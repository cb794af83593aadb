"""Lost answers on submit, for every generation vendor that creates billable tasks.

None of RunningHub, KIE or Hunyuan 3D dedupes submissions (VENDORS.md), so a submit whose request may
have reached the vendor must say so (`VendorOutcomeUnknown`) instead of inviting a blind retry, and
the simulators must show the task that was created anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import httpx
import pytest

from tests.vendors.conftest import API_KEY, TENCENT_SECRET_ID, TENCENT_SECRET_KEY, WEBAPP_ID, FakeClock
from vendors.base import GenerationVendor, VendorOutcomeUnknown, VendorUnavailable
from vendors.hunyuan3d import Hunyuan3DClient, Hunyuan3DRequest
from vendors.kie import KieClient, VideoRequest
from vendors.runninghub import AppRun, NodeValue, RunningHubClient
from vendors.sim.common import SimTask
from vendors.sim.hunyuan3d import Hunyuan3DSim
from vendors.sim.kie import KieSim
from vendors.sim.runninghub import RunningHubSim
from vendors.tencent_ci import TencentCiClient

KIE_KEY = "kie-7c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f"
SOME_TASK = "1234567890123456789"


class LossySim(Protocol):
    def handle(self, request: httpx.Request) -> httpx.Response: ...
    def configure(self, **changes: object) -> object: ...
    def created_tasks(self) -> list[SimTask]: ...
    def max_concurrent(self, account: str) -> int: ...


@dataclass(frozen=True)
class Vendor:
    """One vendor as these tests drive it: its simulator and client, a valid request, the account the
    simulator files tasks under, and the endpoint (path or action) its submit hits."""

    base_url: str
    account: str
    submit_endpoint: str
    new_sim: Callable[[FakeClock], LossySim]
    new_client: Callable[[httpx.Client, FakeClock], GenerationVendor]
    request: object


VENDORS = [
    pytest.param(
        Vendor(
            base_url="http://rh.sim",
            account=API_KEY,
            submit_endpoint="/task/openapi/ai-app/run",
            new_sim=lambda clock: RunningHubSim(api_keys=[API_KEY], clock=clock, seed=7),
            new_client=lambda http, _clock: RunningHubClient(http, api_key=API_KEY),
            request=AppRun(webapp_id=WEBAPP_ID, nodes=(NodeValue("6", "text", "a red fox"),)),
        ),
        id="runninghub",
    ),
    pytest.param(
        Vendor(
            base_url="http://kie.sim",
            account=KIE_KEY,
            submit_endpoint="/api/v1/jobs/createTask",
            new_sim=lambda clock: KieSim(api_keys=[KIE_KEY], clock=clock, seed=7),
            new_client=lambda http, _clock: KieClient(http, api_key=KIE_KEY),
            request=VideoRequest(model="sora-2", resolution="720p", duration=10, prompt="a red fox"),
        ),
        id="kie",
    ),
    pytest.param(
        Vendor(
            base_url="https://ai3d.tencentcloudapi.com",
            account=TENCENT_SECRET_ID,
            submit_endpoint="SubmitHunyuanTo3DProJob",
            new_sim=lambda clock: Hunyuan3DSim(
                credentials={TENCENT_SECRET_ID: TENCENT_SECRET_KEY}, clock=clock, seed=7
            ),
            new_client=lambda http, clock: Hunyuan3DClient(
                http, secret_id=TENCENT_SECRET_ID, secret_key=TENCENT_SECRET_KEY, clock=clock
            ),
            request=Hunyuan3DRequest("3.0", prompt="a chair"),
        ),
        id="hunyuan3d",
    ),
]


def raising(exc_type: type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
    """A vendor that never answers: every request ends in `exc_type`."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type("simulated", request=request)

    return handler


@contextmanager
def connected(vendor: Vendor, handler: Callable[[httpx.Request], httpx.Response]) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.MockTransport(handler), base_url=vendor.base_url, timeout=5) as http:
        yield http


# --- transport errors on submit and poll -------------------------------------------------------------


@pytest.mark.parametrize("vendor", VENDORS)
def test_read_timeout_on_submit_is_outcome_unknown(vendor: Vendor, clock: FakeClock) -> None:
    """The request went out and no answer came back: the vendor may have started a task."""
    with connected(vendor, raising(httpx.ReadTimeout)) as http:
        client = vendor.new_client(http, clock)

        with pytest.raises(VendorOutcomeUnknown) as info:
            client.submit(vendor.request, idempotency_key="job-1")

    assert info.value.code == "outcome_unknown"
    assert not isinstance(info.value, VendorUnavailable)


@pytest.mark.parametrize("vendor", VENDORS)
def test_connect_error_on_submit_is_unavailable(vendor: Vendor, clock: FakeClock) -> None:
    """No connection, so the request never left us: safe to retry."""
    with connected(vendor, raising(httpx.ConnectError)) as http:
        client = vendor.new_client(http, clock)

        with pytest.raises(VendorUnavailable) as info:
            client.submit(vendor.request, idempotency_key="job-1")

    assert info.value.code == "transport"


@pytest.mark.parametrize("vendor", VENDORS)
def test_read_timeout_on_poll_is_unavailable(vendor: Vendor, clock: FakeClock) -> None:
    """A poll creates nothing, so a lost answer is only a reason to ask again."""
    with connected(vendor, raising(httpx.ReadTimeout)) as http:
        client = vendor.new_client(http, clock)

        with pytest.raises(VendorUnavailable) as info:
            client.poll(SOME_TASK)

    assert info.value.code == "transport"


# --- the simulators' lost-answer knob and task list ----------------------------------------------------


@pytest.mark.parametrize("vendor", VENDORS)
def test_lost_answer_creates_a_task_while_the_client_sees_outcome_unknown(vendor: Vendor, clock: FakeClock) -> None:
    sim = vendor.new_sim(clock)
    sim.configure(lost_answer_rate={vendor.submit_endpoint: 1.0})

    with connected(vendor, sim.handle) as http, pytest.raises(VendorOutcomeUnknown):
        vendor.new_client(http, clock).submit(vendor.request, idempotency_key="job-1")

    tasks = sim.created_tasks()
    assert len(tasks) == 1
    assert (tasks[0].account == vendor.account, tasks[0].created_at, tasks[0].cancelled) == (True, clock.now, False)


@pytest.mark.parametrize("vendor", VENDORS)
def test_the_orphan_of_a_lost_answer_counts_towards_max_concurrent(vendor: Vendor, clock: FakeClock) -> None:
    sim = vendor.new_sim(clock)
    with connected(vendor, sim.handle) as http:
        client = vendor.new_client(http, clock)
        client.submit(vendor.request, idempotency_key="job-1")
        sim.configure(lost_answer_rate={vendor.submit_endpoint: 1.0})

        with pytest.raises(VendorOutcomeUnknown):
            client.submit(vendor.request, idempotency_key="job-2")

    assert sim.max_concurrent(vendor.account) == 2


@pytest.mark.parametrize("vendor", VENDORS)
def test_lost_answers_on_other_endpoints_spare_the_submit(vendor: Vendor, clock: FakeClock) -> None:
    """`lost_answer_rate` is per endpoint, like `failure_rate`."""
    sim = vendor.new_sim(clock)
    sim.configure(lost_answer_rate={"/elsewhere": 1.0, "OtherAction": 1.0})

    with connected(vendor, sim.handle) as http:
        task_id = vendor.new_client(http, clock).submit(vendor.request, idempotency_key="job-1")

    assert [task.task_id for task in sim.created_tasks()] == [task_id]


@pytest.mark.parametrize("vendor", VENDORS)
def test_two_identical_submits_create_two_tasks(vendor: Vendor, clock: FakeClock) -> None:
    """The vendor ignores our correlation header: the same request and key twice is two paid tasks."""
    sim = vendor.new_sim(clock)
    with connected(vendor, sim.handle) as http:
        client = vendor.new_client(http, clock)

        first = client.submit(vendor.request, idempotency_key="job-1")
        second = client.submit(vendor.request, idempotency_key="job-1")

    assert first != second
    assert [task.task_id for task in sim.created_tasks()] == [first, second]


def test_sim_task_repr_hides_the_account() -> None:
    task = SimTask(task_id="1", account=API_KEY, created_at=0.0, cancelled=False)

    assert API_KEY not in repr(task)


# --- cancel -------------------------------------------------------------------------------------------


def test_can_cancel_says_which_vendors_can_stop_a_task() -> None:
    """CI runs nothing at the vendor before archiving fetches, so it has nothing left to stop."""
    clients = (RunningHubClient, KieClient, Hunyuan3DClient, TencentCiClient)

    flags = {client.name: client.can_cancel for client in clients}

    assert flags == {"runninghub": True, "kie": False, "hunyuan3d": False, "tencent_ci": True}


def test_read_timeout_on_cancel_is_unavailable() -> None:
    """A cancel is safe to repeat, so a lost answer is only a reason to ask again."""
    with httpx.Client(transport=httpx.MockTransport(raising(httpx.ReadTimeout)), base_url="http://rh.sim") as http:
        client = RunningHubClient(http, api_key=API_KEY)

        with pytest.raises(VendorUnavailable) as info:
            client.cancel(SOME_TASK)

    assert info.value.code == "transport"
