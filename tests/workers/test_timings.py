"""Every job answer says where its time went, each span between its named stored events."""

from __future__ import annotations

import dramatiq
from litestar import Litestar
from litestar.testing import TestClient

from infra.resources import Resources
from tests.support import auth, make_user, pose12_body, terminal_job

Client = TestClient[Litestar]


def test_timings_are_the_spans_between_the_stored_events(
    api: Client, resources: Resources, worker: dramatiq.Worker
) -> None:
    user = make_user(resources, credits=1)
    job_id = api.post("/v1/jobs", json=pose12_body(), headers=auth(user)).json()["id"]
    terminal_job(resources, job_id)

    answer = api.get(f"/v1/jobs/{job_id}", headers=auth(user)).json()
    listed = api.get("/v1/jobs", headers=auth(user)).json()["items"][0]

    at = dict(resources.jobs.moves([job_id])[job_id])
    span = {
        "moderation": 0.0,
        "queue": (at["submitting"] - at["queued"]).total_seconds(),
        "vendor": (at["archiving"] - at["submitting"]).total_seconds(),
        "archiving": (at["succeeded"] - at["archiving"]).total_seconds(),
        "total": (at["succeeded"] - at["queued"]).total_seconds(),
    }
    assert answer["timings"] == listed["timings"]
    assert answer["timings"] == {name: round(value, 3) for name, value in span.items()}
    assert answer["timings"]["total"] > 0
