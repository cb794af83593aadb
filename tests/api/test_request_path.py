"""The request path stays short: a submit with warm caches is one transaction of a few statements,
and a read is a few queries. Statements are counted with an engine event, not timed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import event

from infra.resources import Resources
from tests.support import auth, make_user

Client = TestClient[Litestar]
VIDEO = {"kind": "video", "input": {"model": "sora-2", "resolution": "720p", "duration": 10, "prompt": "a calm sea"}}


@contextmanager
def statements(resources: Resources) -> Iterator[list[str]]:
    """Every SQL statement the API's engine sends meanwhile (BEGIN/COMMIT included as text)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if not statement.upper().startswith("BEGIN"):  # SQLite's BEGIN IMMEDIATE: counted by `begin`
            seen.append(statement.split(None, 1)[0].upper())

    def begin(conn: Any) -> None:
        seen.append("BEGIN")

    def commit(conn: Any) -> None:
        seen.append("COMMIT")

    event.listen(resources.engine, "before_cursor_execute", record)
    event.listen(resources.engine, "begin", begin)
    event.listen(resources.engine, "commit", commit)
    try:
        yield seen
    finally:
        event.remove(resources.engine, "before_cursor_execute", record)
        event.remove(resources.engine, "begin", begin)
        event.remove(resources.engine, "commit", commit)


def test_a_warm_submit_is_one_transaction_of_at_most_six_statements(api: Client, resources: Resources) -> None:
    user = make_user(resources, credits=100)
    api.post("/v1/jobs", json=VIDEO, headers=auth(user))  # warms the key cache and the config

    with statements(resources) as seen:
        resp = api.post("/v1/jobs", json=VIDEO, headers=auth(user))

    assert resp.status_code == 202, resp.text
    assert seen.count("BEGIN") == 1 and seen.count("COMMIT") == 1
    assert len([s for s in seen if s not in ("BEGIN", "COMMIT")]) <= 6, seen


def test_a_submit_does_not_read_the_room_its_job_is_not_in_yet(
    api: Client, resources: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new job enters its room when the generation pool takes its message, after the answer: the
    answer reads no room (a room of thousands would cost every submit a read of all of them)."""
    user = make_user(resources, credits=100)
    reads: list[str] = []
    snapshot = resources.rooms.snapshot
    monkeypatch.setattr(resources.rooms, "snapshot", lambda room: reads.append(room) or snapshot(room))

    resp = api.post("/v1/jobs", json=VIDEO, headers=auth(user))
    read = api.get(f"/v1/jobs/{resp.json()['id']}", headers=auth(user))

    assert resp.status_code == 202 and resp.json()["status"] == "queued" and resp.json()["queue"] is None
    assert read.status_code == 200 and reads == ["kie:sora-2"]  # the GET asks where it waits; the submit did not


def test_a_read_is_a_few_queries(api: Client, resources: Resources) -> None:
    user = make_user(resources, credits=100)
    job_id = api.post("/v1/jobs", json=VIDEO, headers=auth(user)).json()["id"]

    with statements(resources) as seen:
        resp = api.get(f"/v1/jobs/{job_id}", headers=auth(user))
    with statements(resources) as listed:
        page = api.get("/v1/jobs", headers=auth(user))

    assert resp.status_code == 200 and page.status_code == 200
    assert seen.count("SELECT") <= 2 and listed.count("SELECT") <= 2  # the job(s), then their moves
    assert "COMMIT" not in seen + listed  # reads write nothing


def test_a_connection_the_database_dropped_is_a_503_once_then_the_pool_reconnects(
    api: Client, resources: Resources
) -> None:
    user = make_user(resources, credits=100)
    job_id = api.post("/v1/jobs", json=VIDEO, headers=auth(user)).json()["id"]
    dropped_once: list[bool] = []

    def drop(dbapi_connection: Any, *_: Any) -> None:  # the server went away under the next checkout
        if not dropped_once:
            dropped_once.append(True)
            dbapi_connection.close()

    event.listen(resources.engine, "checkout", drop)
    try:
        dropped = api.get(f"/v1/jobs/{job_id}", headers=auth(user))
    finally:
        event.remove(resources.engine, "checkout", drop)
    again = api.get(f"/v1/jobs/{job_id}", headers=auth(user))

    assert (dropped.status_code, dropped.json()["error"]["code"]) == (503, "unavailable")
    assert dropped.headers["Retry-After"] == "1" and again.status_code == 200
