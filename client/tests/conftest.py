"""The client against a scripted API (httpx.MockTransport): no network, no real sleeps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from client_fakes import API_KEY, API_URL, Clock, FakeApi
from genq_client import AsyncClient, Client


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The client's tests are all in the fast tier (tests/conftest.py describes the tiers)."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.fast)


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
