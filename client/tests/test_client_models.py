"""The API's job answer as a `Job`: typed, and tolerant of fields a newer API adds."""

from __future__ import annotations

from datetime import UTC, datetime

from client_fakes import JOB_ID, job_json
from genq_client import Job, JobError, QueuePlace, Result, Timings


def test_a_job_answer_is_parsed_into_typed_parts() -> None:
    data = job_json(
        "failed",
        error={"code": "vendor_rejected", "message": "no"},
        queue={"reason": "vendor_slots", "position": 2},
        results=[{"url": "https://s3.test/0.png", "content_type": "image/png", "size": 10}],
        retry_of="01JQ5S1N2Q8W6F7G8H9J0K1M2A",
        retried_by=["01JQ5S1N2Q8W6F7G8H9J0K1M2B"],
    )

    job = Job.from_json(data)

    assert job.id == JOB_ID and job.status == "failed" and job.terminal and not job.succeeded
    assert job.created_at == datetime(2025, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert job.error == JobError("vendor_rejected", "no")
    assert job.queue == QueuePlace("vendor_slots", 2)
    assert job.results == (Result("https://s3.test/0.png", "image/png", 10),)
    assert job.timings == Timings(0.0, 0.5, 1.0, 0.25, 1.75)
    assert job.retried_by == ("01JQ5S1N2Q8W6F7G8H9J0K1M2B",)


def test_fields_a_newer_api_adds_are_kept_not_refused() -> None:
    data = job_json(labels=["spring"], timings={**job_json()["timings"], "moderation_wait": 3.0})

    job = Job.from_json(data)

    assert job.extra == {"labels": ["spring"]}
    assert job.to_dict()["labels"] == ["spring"]
    assert job.timings == Timings(0.0, 0.5, 1.0, 0.25, 1.75)


def test_to_dict_gives_back_the_api_answer() -> None:
    data = job_json(
        "succeeded",
        results=[{"url": "https://s3.test/0.png", "content_type": "image/png", "size": 10}],
        finished_at="2025-05-01T10:00:02Z",
        retried_by=None,
    )

    assert Job.from_json(data).to_dict() == data


def test_only_the_five_terminal_statuses_end_a_job() -> None:
    statuses = ["pending_audit", "queued", "submitting", "processing", "archiving", "succeeded", "failed"]
    statuses += ["timed_out", "cancelled", "audit_failed"]

    ended = [s for s in statuses if Job.from_json(job_json(s)).terminal]

    assert ended == ["succeeded", "failed", "timed_out", "cancelled", "audit_failed"]
