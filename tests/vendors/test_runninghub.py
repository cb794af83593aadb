"""RunningHubClient against RunningHubSim over httpx.MockTransport; time moves by the fake clock."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from PIL import Image

from vendors.base import (
    Done,
    Failed,
    Running,
    VendorBusy,
    VendorError,
    VendorExpired,
    VendorProtocolError,
    VendorRejected,
    VendorUnavailable,
)
from vendors.runninghub import AppRun, NodeValue, RunningHubClient
from vendors.sim.runninghub import RunningHubSim

UNKNOWN_TASK = "1234567890123456789"
KEY = "rhk-3f9a0c2b7d4e4a1b9c8d7e6f5a4b3c2d"
Handler = Callable[[httpx.Request], httpx.Response]
Arrange = Callable[[RunningHubSim], Handler]
Act = Callable[[httpx.Client, AppRun], object]


def with_text(run: AppRun, text: str) -> AppRun:
    return dataclasses.replace(run, nodes=(NodeValue("6", "text", text), *run.nodes[1:]))


def finish(sim: RunningHubSim, clock: Any) -> None:
    """Move the fake clock past the queued and running phases."""
    clock.advance(sim.knobs.queued_s + sim.knobs.running_s)


# --- the happy path ---------------------------------------------------------------------------------


def test_submit_poll_done_with_twelve_valid_pngs(sim, clock, http, client, app_run) -> None:
    """Queued, then running, then 12 PNG files that download through the same transport."""
    task_id = client.submit(app_run, idempotency_key="job-1")

    first = client.poll(task_id)
    clock.advance(sim.knobs.queued_s)
    second = client.poll(task_id)
    clock.advance(sim.knobs.running_s)
    outcome = client.poll(task_id)

    assert len(task_id) == 19 and task_id.isdigit()
    assert (first, second) == (Running(stage="queued"), Running(stage="running"))
    assert isinstance(outcome, Done) and len(outcome.files) == 12
    bodies = []
    for file in outcome.files:
        assert (file.content_type, file.ext) == ("image/png", "png")
        response = http.get(file.url)
        assert response.status_code == 200
        Image.open(io.BytesIO(response.content)).verify()
        bodies.append(response.content)
    assert len(set(bodies)) == 12


def test_node_values_reach_the_sim(sim, client, app_run) -> None:
    task_id = client.submit(app_run, idempotency_key="job-1")

    run_call = next(call for call in sim.calls if call.path == "/task/openapi/ai-app/run")

    assert run_call.task_id == task_id
    assert run_call.body["webappId"] == app_run.webapp_id
    assert run_call.body["nodeInfoList"] == [
        {"nodeId": "6", "fieldName": "text", "fieldValue": "a red fox"},
        {"nodeId": "40", "fieldName": "image", "fieldValue": "api/3b1c.png"},
        {"nodeId": "25", "fieldName": "seed", "fieldValue": "42"},
    ]


def test_wire_carries_key_in_body_and_bearer_and_job_id_as_request_id(sim, api_key, app_run) -> None:
    seen: list[httpx.Request] = []

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return sim.handle(request)

    with httpx.Client(transport=httpx.MockTransport(spy), base_url="http://rh.sim") as http:
        client = RunningHubClient(http, api_key=api_key, webhook_url="https://genq.example/hook?t=x")
        client.submit(app_run, idempotency_key="job-1")

    body = json.loads(seen[0].content)
    assert (body["apiKey"], body["webhookUrl"], body["instanceType"]) == (
        api_key, "https://genq.example/hook?t=x", "default",
    )  # fmt: skip
    assert seen[0].headers["Authorization"] == f"Bearer {api_key}"
    assert seen[0].headers["X-Request-Id"] == "job-1"


def test_node_errors_cancel_the_task_the_vendor_accepted(app_run) -> None:
    paths: list[str] = []
    tips = json.dumps({"result": False, "node_errors": {"40": {"errors": ["bad image"]}}})

    def vendor(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, json={"code": 0, "msg": "success", "data": {"taskId": "1", "promptTips": tips}})

    with (
        httpx.Client(transport=httpx.MockTransport(vendor), base_url="http://rh.sim") as http,
        pytest.raises(VendorRejected),
    ):
        submit(http, app_run)

    assert paths == ["/task/openapi/ai-app/run", "/task/openapi/cancel"]


def test_outputs_of_an_unfinished_task_is_rejected_not_finished(client, app_run) -> None:
    task_id = client.submit(app_run, idempotency_key="job-1")

    with pytest.raises(VendorRejected) as info:
        client.outputs(task_id)

    assert info.value.code == "not_finished"


def test_outputs_of_a_finished_task_are_fresh_urls(sim, clock, client, app_run) -> None:
    task_id = client.submit(app_run, idempotency_key="job-1")
    finish(sim, clock)

    files = client.outputs(task_id)

    assert len(files) == 12
    assert all("Expires=" in f.url and "Signature=" in f.url for f in files)


def test_account_status_uses_the_lower_case_key(sim, client, app_run) -> None:
    client.submit(app_run, idempotency_key="job-1")

    status = client.account_status()

    assert status["currentTaskCounts"] == "1"
    assert sim.calls[-1].path == "/uc/openapi/accountStatus"


# --- classification: one table, one test ------------------------------------------------------------


def via_sim(**knobs: object) -> Arrange:
    def arrange(sim: RunningHubSim) -> Handler:
        sim.configure(**knobs)
        return sim.handle

    return arrange


def canned(code: int | None = None, *, status: int = 200, body: bytes | None = None, data: object = None) -> Arrange:
    """A fixed answer for what the simulator cannot produce through this client."""
    content = body if body is not None else json.dumps({"code": code, "msg": "CANNED", "data": data}).encode()
    return lambda _sim: lambda _request: httpx.Response(status, content=content)


def submit(http: httpx.Client, run: AppRun) -> object:
    return RunningHubClient(http, api_key=KEY).submit(run, idempotency_key="job-1")


def poll_unknown(http: httpx.Client, run: AppRun) -> object:
    return RunningHubClient(http, api_key=KEY).poll(UNKNOWN_TASK)


def submit_changed(**changes: Any) -> Act:
    return lambda http, run: submit(http, dataclasses.replace(run, **changes))


def submit_with_other_key(http: httpx.Client, run: AppRun) -> object:
    other = RunningHubClient(http, api_key="rhk-00000000000000000000000000000000")
    return other.submit(run, idempotency_key="job-1")


TIPS_WITH_ERRORS = json.dumps({"result": False, "node_errors": {"40": {"errors": ["bad image"]}}})

CLASSIFICATION = [
    pytest.param(via_sim(concurrency_limit=0), submit, VendorBusy, "runninghub_421", id="421"),
    pytest.param(via_sim(concurrency_limit=0, reject_code=415), submit, VendorBusy, "runninghub_415", id="415"),
    pytest.param(canned(814), submit, VendorBusy, "runninghub_814", id="814"),
    pytest.param(via_sim(failure_rate=1.0, failure_kind="code_500"), submit, VendorUnavailable, "runninghub_500",
                 id="500"),
    pytest.param(canned(808), submit, VendorUnavailable, "runninghub_808", id="808"),
    pytest.param(via_sim(failure_rate=1.0, failure_kind="rate"), submit, VendorBusy, "runninghub_1003",
                 id="1003"),
    pytest.param(via_sim(failure_rate=1.0, failure_kind="http_500"), submit, VendorUnavailable, "http_500",
                 id="http-500"),
    pytest.param(canned(status=429, body=b"slow down"), submit, VendorBusy, "http_429", id="http-429"),
    pytest.param(via_sim(failure_rate=1.0, failure_kind="transport"), poll_unknown, VendorUnavailable, "transport",
                 id="transport"),
    pytest.param(via_sim(), poll_unknown, VendorExpired, "runninghub_807", id="807"),
    pytest.param(canned(423), poll_unknown, VendorExpired, "runninghub_423", id="423"),
    pytest.param(via_sim(), submit_changed(instance_type="huge"), VendorRejected, "runninghub_301", id="301"),
    pytest.param(via_sim(), submit_with_other_key, VendorRejected, "runninghub_802", id="802"),
    pytest.param(via_sim(), submit_changed(nodes=(NodeValue("99", "text", "x"),)), VendorRejected,
                 "runninghub_803", id="803"),
    pytest.param(via_sim(), submit_changed(webapp_id=1), VendorRejected, "runninghub_901", id="901"),
    pytest.param(canned(809), submit, VendorRejected, "runninghub_809", id="809"),
    pytest.param(canned(status=404, body=b"not found"), submit, VendorRejected, "http_404", id="http-404"),
    pytest.param(canned(0, data={"taskId": "1", "promptTips": TIPS_WITH_ERRORS}), submit, VendorRejected,
                 "node_errors", id="node-errors"),
    pytest.param(canned(body=b"<html>bad gateway</html>"), submit, VendorProtocolError, "not_json", id="not-json"),
    pytest.param(canned(body=b'{"status": "ok"}'), submit, VendorProtocolError, "bad_envelope", id="no-envelope"),
    pytest.param(canned(0, data={"clientId": "x"}), submit, VendorProtocolError, "missing_taskId", id="no-taskId"),
    pytest.param(canned(0, data=[{"fileType": "png"}]), poll_unknown, VendorProtocolError, "missing_fileUrl",
                 id="no-fileUrl"),
]  # fmt: skip


@pytest.mark.parametrize(("arrange", "act", "bucket", "code"), CLASSIFICATION)
def test_classification(app_run, arrange: Arrange, act: Act, bucket: type[VendorError], code: str) -> None:
    """Each vendor answer lands in exactly one bucket, with a stable code."""
    transport = httpx.MockTransport(arrange(RunningHubSim(api_keys=[KEY], seed=1)))
    with (
        httpx.Client(transport=transport, base_url="http://rh.sim") as http,
        pytest.raises(VendorError) as info,
    ):
        act(http, app_run)

    assert type(info.value) is bucket
    assert info.value.code == code


def test_http_429_is_back_pressure_carrying_the_retry_after_hint(app_run) -> None:
    answer = httpx.Response(429, headers={"Retry-After": "3"}, text="slow down")
    with (
        httpx.Client(transport=httpx.MockTransport(lambda _: answer), base_url="http://rh.sim") as http,
        pytest.raises(VendorBusy) as info,
    ):
        submit(http, app_run)

    assert info.value.retry_after_ms == 3000


# --- failed, expired and forced tasks ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "knobs", "code"),
    [
        ("sim-fail please", {}, "vendor_task_failed"),
        ("a red fox", {"job_fail_rate": 1.0}, "vendor_task_failed"),
        ("sim-reject please", {}, "vendor_moderation_rejected"),
    ],
    ids=["fail-marker", "fail-rate", "audit-marker"],
)
def test_failed_task_is_a_failed_outcome(sim, clock, client, app_run, text, knobs, code) -> None:
    sim.configure(**knobs)
    task_id = client.submit(with_text(app_run, text), idempotency_key="job-1")
    finish(sim, clock)

    outcome = client.poll(task_id)

    assert isinstance(outcome, Failed)
    assert outcome.code == code


def test_audit_failure_keeps_the_vendor_reason(sim, clock, client, app_run) -> None:
    task_id = client.submit(with_text(app_run, "sim-reject"), idempotency_key="job-1")
    finish(sim, clock)

    outcome = client.poll(task_id)

    assert outcome == Failed("vendor_moderation_rejected", "audit.RHAuditException: Porn")


def test_task_past_its_expiry_is_expired(sim, clock, client, app_run) -> None:
    sim.configure(job_expiry_s=60)
    task_id = client.submit(app_run, idempotency_key="job-1")
    finish(sim, clock)
    assert isinstance(client.poll(task_id), Done)

    clock.advance(60)

    with pytest.raises(VendorExpired) as info:
        client.poll(task_id)
    assert info.value.code == "runninghub_807"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("complete", Done), ("fail", Failed)],
)
def test_forced_transition_through_http(http, client, app_run, kind, expected) -> None:
    task_id = client.submit(app_run, idempotency_key="job-1")

    answer = http.post(f"/__sim/jobs/{task_id}/{kind}")

    assert answer.status_code == 200
    assert isinstance(client.poll(task_id), expected)


def test_forced_expiry_through_http(http, client, app_run) -> None:
    task_id = client.submit(app_run, idempotency_key="job-1")

    http.post(f"/__sim/jobs/{task_id}/expire")

    with pytest.raises(VendorExpired):
        client.poll(task_id)


def test_forcing_an_unknown_task_is_404(http) -> None:
    assert http.post(f"/__sim/jobs/{UNKNOWN_TASK}/complete").status_code == 404


def test_cancelled_task_fails(client, app_run) -> None:
    task_id = client.submit(app_run, idempotency_key="job-1")

    client.cancel(task_id)

    assert isinstance(client.poll(task_id), Failed)


def test_cancel_marks_the_task_cancelled_in_the_sim(sim, client, app_run) -> None:
    task_id = client.submit(app_run, idempotency_key="job-1")
    other = client.submit(app_run, idempotency_key="job-2")

    client.cancel(task_id)

    assert [(task.task_id, task.cancelled) for task in sim.created_tasks()] == [(task_id, True), (other, False)]


def test_cancel_of_a_finished_task_leaves_it_done(sim, clock, client, app_run) -> None:
    task_id = client.submit(app_run, idempotency_key="job-1")
    finish(sim, clock)

    client.cancel(task_id)

    assert isinstance(client.poll(task_id), Done)
    assert [task.cancelled for task in sim.created_tasks()] == [False]


def test_cancel_of_an_unknown_task_is_nothing_to_cancel(sim, client) -> None:
    """RunningHub answers 807: nothing runs under that id, which is what a cancel wants."""
    client.cancel(UNKNOWN_TASK)

    assert [call.path for call in sim.calls] == ["/task/openapi/cancel"]


# --- concurrency ------------------------------------------------------------------------------------


def test_concurrency_limit_is_back_pressure_and_frees_on_finish(sim, api_key, client, app_run) -> None:
    """Limit 2: the third submit is VendorBusy; once one finishes a new submit is accepted."""
    sim.configure(concurrency_limit=2)
    first = client.submit(app_run, idempotency_key="job-1")
    client.submit(app_run, idempotency_key="job-2")

    with pytest.raises(VendorBusy):
        client.submit(app_run, idempotency_key="job-3")
    sim.force(first, "complete")
    client.submit(app_run, idempotency_key="job-3")

    assert sim.max_concurrent(api_key) == 2


def test_max_concurrent_is_exact_without_polling(sim, clock, api_key, client, app_run) -> None:
    """Nobody polls, yet a task that ended before the next began is not counted as overlapping."""
    client.submit(app_run, idempotency_key="job-1")
    finish(sim, clock)
    client.submit(app_run, idempotency_key="job-2")
    client.submit(app_run, idempotency_key="job-3")
    clock.advance(1000)

    assert sim.max_concurrent(api_key) == 2
    assert sim.unfinished(api_key) == 0


def test_stats_report_max_concurrent_by_masked_key(sim, http, client, app_run) -> None:
    client.submit(app_run, idempotency_key="job-1")
    client.submit(app_run, idempotency_key="job-2")

    stats = http.get("/__sim/stats").json()

    assert stats == {"max_concurrent": {"****3c2d": 2}, "unfinished": {"****3c2d": 2}, "tasks": 2}


# --- secrets ----------------------------------------------------------------------------------------


def test_api_key_never_in_call_log_or_exception_text(sim, http, api_key, app_run) -> None:
    """Failures of every kind, including answers that echo the key back, never show it."""
    echo = httpx.MockTransport(lambda _: httpx.Response(200, json={"code": 1, "msg": f"bad {api_key}"}))
    leaky = httpx.MockTransport(lambda _: httpx.Response(200, json={"error": f"key {api_key}"}))
    cut = httpx.MockTransport(lambda _: httpx.Response(200, json={"error": "x" * 100 + api_key}))  # at [:120]
    client = RunningHubClient(http, api_key=api_key)
    task_id = client.submit(app_run, idempotency_key="job-1")
    failures: list[VendorError] = []

    def collect(call: Callable[[], object]) -> None:
        try:
            call()
        except VendorError as exc:
            failures.append(exc)

    for kind in ("transport", "http_500", "busy"):
        sim.configure(failure_rate=1.0, failure_kind=kind)
        collect(lambda: client.poll(task_id))
    sim.configure(failure_rate=0.0)
    collect(lambda: client.poll(UNKNOWN_TASK))
    collect(lambda: client.submit(dataclasses.replace(app_run, webapp_id=1), idempotency_key="job-2"))
    for transport in (echo, leaky, cut):
        with httpx.Client(transport=transport, base_url="http://rh.sim") as bad:
            collect(lambda: RunningHubClient(bad, api_key=api_key).submit(app_run, idempotency_key="job-3"))

    assert len(failures) == 8
    for exc in failures:
        assert api_key[:8] not in f"{exc} {exc!r} {exc.detail} {exc.args}"
    assert any("****3c2d" in str(exc) for exc in failures)
    assert api_key not in http.get("/__sim/calls").text
    assert api_key not in repr(sim.calls) + repr(client)
