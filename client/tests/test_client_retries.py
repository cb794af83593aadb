"""Requests refused with 429/5xx or never sent are tried again, honouring Retry-After, a bounded
number of times; a request that is not safe to repeat is not repeated after a 5xx."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from client_fakes import JOB_ID, Clock, FakeApi, answer, api_error, fails, job_json
from genq_client import ApiConnectionError, ApiError, Client
from genq_client.retry import retry_after

JOB = f"/v1/jobs/{JOB_ID}"


def test_a_429_waits_as_long_as_retry_after_says(client: Client, api: FakeApi, clock: Clock) -> None:
    api.on("GET", JOB, api_error(429, "rate_limited", headers={"Retry-After": "7"}), answer(200, job_json()))

    job = client.get(JOB_ID)

    assert job.id == JOB_ID
    assert clock.slept == [7.0]
    assert len(api.to("GET", JOB)) == 2


def test_5xx_backs_off_and_gives_up_after_max_retries(client: Client, api: FakeApi, clock: Clock) -> None:
    api.on("GET", JOB, answer(503, {"error": {"code": "unavailable", "message": "busy", "details": {}}}))

    with pytest.raises(ApiError) as raised:
        client.get(JOB_ID)

    assert (raised.value.status, raised.value.code, raised.value.message) == (503, "unavailable", "busy")
    assert clock.slept == [0.5, 1.0, 2.0]
    assert len(api.to("GET", JOB)) == 4


def test_a_connection_that_never_got_through_is_retried_even_for_a_cancel(
    client: Client, api: FakeApi, clock: Clock
) -> None:
    api.on("POST", f"{JOB}/cancel", fails(httpx.ConnectError("refused")), answer(200, job_json("cancelled")))

    job = client.cancel(JOB_ID)

    assert job.status == "cancelled"
    assert clock.slept == [0.5]


def test_a_cancel_is_not_sent_again_after_a_5xx_or_a_lost_answer(client: Client, api: FakeApi) -> None:
    api.on("POST", f"{JOB}/cancel", api_error(500, "internal_error"))
    api.on("POST", f"{JOB}/retry", fails(httpx.ReadTimeout("no answer")))

    with pytest.raises(ApiError):
        client.cancel(JOB_ID)
    with pytest.raises(ApiConnectionError):
        client.retry(JOB_ID)

    assert len(api.to("POST", f"{JOB}/cancel")) == 1
    assert len(api.to("POST", f"{JOB}/retry")) == 1


def test_a_retried_submission_carries_the_same_idempotency_key(client: Client, api: FakeApi, clock: Clock) -> None:
    api.on("POST", "/v1/jobs", api_error(502, "bad_gateway"), fails(httpx.ReadError("reset")), answer(202, job_json()))

    client.submit("basic_clean", {"image_url": "https://example.com/shoe.png"}, external_id="order-7")

    sent = api.to("POST", "/v1/jobs")
    keys = {request.headers["Idempotency-Key"] for request in sent}
    assert len(sent) == 3 and len(keys) == 1 and keys.pop().startswith("genq-client-")
    assert clock.slept == [0.5, 1.0]


def test_a_retry_after_longer_than_a_minute_is_raised_not_slept(client: Client, api: FakeApi, clock: Clock) -> None:
    api.on("GET", JOB, api_error(429, "rate_limited", headers={"Retry-After": "3600"}))

    with pytest.raises(ApiError) as raised:
        client.get(JOB_ID)

    assert (raised.value.status, raised.value.retry_after) == (429, 3600.0)
    assert clock.slept == []


def test_a_client_error_is_raised_at_once_with_the_apis_details(client: Client, api: FakeApi, clock: Clock) -> None:
    api.on("POST", "/v1/jobs", api_error(422, "invalid_input", "unknown kind"))

    with pytest.raises(ApiError) as raised:
        client.submit("nope", {})

    error = raised.value
    assert (error.status, error.code, error.message, error.details) == (
        422,
        "invalid_input",
        "unknown kind",
        {"field": "kind"},
    )
    assert clock.slept == []


def test_an_error_page_that_is_not_the_apis_shape_still_raises_an_api_error(
    client: Client, api: FakeApi, clock: Clock
) -> None:
    api.on("GET", JOB, lambda _: httpx.Response(404, text="<html>nginx</html>"))

    with pytest.raises(ApiError) as raised:
        client.get(JOB_ID)

    assert (raised.value.status, raised.value.code, raised.value.message) == (404, "http_404", "<html>nginx</html>")


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2025, 5, 1, 10, 0, 0, tzinfo=UTC)

    assert retry_after("12", now=now) == 12.0
    assert retry_after("Thu, 01 May 2025 10:00:30 GMT", now=now) == 30.0
    assert retry_after("Thu, 01 May 2025 09:00:00 GMT", now=now) == 0.0
    assert [retry_after(v, now=now) for v in (None, "", "soon", "inf")] == [None] * 4


def test_every_api_request_carries_the_key_and_the_user_agent(client: Client, api: FakeApi) -> None:
    api.on("GET", "/v1/jobs", answer(200, {"items": [job_json()], "next_cursor": "c2"}))

    page = client.list(status="queued", limit=5)

    request = api.requests[0]
    assert request.headers["Authorization"] == "Bearer gq_test_key_0123456789"
    assert request.headers["User-Agent"].startswith("genq-client/")
    assert dict(request.url.params) == {"status": "queued", "limit": "5"}
    assert [job.id for job in page.items] == [JOB_ID] and page.next_cursor == "c2"
