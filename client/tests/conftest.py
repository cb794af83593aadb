"""The client against a scripted API (httpx.MockTransport): no network, no real sleeps."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from client_fakes import API_KEY, API_URL, Clock, FakeApi
from genq_client import AsyncClient, Client


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(api: FakeApi, clock: Clock) -> Iterator[Client]:
    transport = httpx.MockTransport(api.handle)
    with Client(API_URL, API_KEY, transport=transport, sleep=clock.sleep, clock=clock) as genq:
        yield genq


@pytest.fixture
def async_client(api: FakeApi, clock: Clock) -> AsyncClient:
    """Closed by the test's own `async with`."""
    return AsyncClient(
        API_URL, API_KEY, transport=httpx.MockTransport(api.handle), sleep=clock.async_sleep, clock=clock
    )
