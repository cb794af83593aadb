"""The waiting rooms' Redis scripts keep the scheduler's invariants atomic, on a real Redis."""

from __future__ import annotations

import redis

from infra.rooms import Entry, Renewal, Rooms, Take, keys
from tests.support import wait_for

ROOM = "kie:sora-2"


def ready_room(client: redis.Redis, *entries: Entry, ttl_s: float = 30.0) -> Rooms:
    rooms = Rooms(client, ttl_s=ttl_s)
    rooms.rebuild(ROOM, [], entries)
    return rooms


def entry(job_id: str, user: str = "u1") -> Entry:
    return Entry(job_id, user, "interactive", arrival=1.0)


def take(rooms: Rooms, job_id: str, *, threshold: int = 2, version: int | None = None) -> Take:
    current = rooms.snapshot(ROOM).version if version is None else version
    holder = f"{job_id}:1"
    answer, _ = rooms.take(
        ROOM, version=current, job_id=job_id, holder=holder, threshold=threshold, user_id="u1", finish=1, vclock=0
    )
    return answer


def test_every_key_of_a_room_shares_one_cluster_hash_tag() -> None:
    assert {name.split("}")[0] for name in keys(ROOM).values()} == {"genq:{kie:sora-2"}


def test_a_take_moves_a_job_to_a_lease_up_to_the_threshold(redis_client: redis.Redis) -> None:
    rooms = ready_room(redis_client, entry("a"), entry("b"), entry("c"))

    answers = [take(rooms, job_id) for job_id in ("a", "b", "c")]

    assert answers == [Take.TAKEN, Take.TAKEN, Take.FULL]
    assert sorted(rooms.holders(ROOM)) == ["a:1", "b:1"]
    assert [e.job_id for e in rooms.snapshot(ROOM).waiting] == ["c"]


def test_a_take_on_a_changed_or_unready_or_paused_room_or_a_gone_job_changes_nothing(
    redis_client: redis.Redis,
) -> None:
    rooms = ready_room(redis_client, entry("a"))
    old = rooms.snapshot(ROOM).version
    rooms.enqueue(ROOM, entry("b"))

    stale = take(rooms, "a", version=old)
    gone = take(rooms, "nobody")
    rooms.pause(ROOM, ms=60_000)
    busy = take(rooms, "a")
    rooms.resume(ROOM)
    redis_client.delete(keys(ROOM)["ready"])
    unready = take(rooms, "a")

    assert (stale, gone, busy, unready) == (Take.STALE, Take.GONE, Take.BUSY, Take.UNREADY)
    assert rooms.in_flight(ROOM) == 0 and len(rooms.snapshot(ROOM).waiting) == 2


def test_only_the_holder_releases_its_lease(redis_client: redis.Redis) -> None:
    rooms = ready_room(redis_client, entry("a"))
    assert take(rooms, "a") is Take.TAKEN

    by_an_older_attempt = rooms.release(ROOM, "a:0")
    by_the_holder = rooms.release(ROOM, "a:1")

    assert (by_an_older_attempt, by_the_holder) == (False, True)
    assert rooms.in_flight(ROOM) == 0


def test_a_lapsed_lease_comes_back_only_while_there_is_room(redis_client: redis.Redis) -> None:
    rooms = ready_room(redis_client, entry("a"), entry("b"), ttl_s=0.05)
    assert take(rooms, "a", threshold=1) is Take.TAKEN
    wait_for(lambda: not rooms.held(ROOM, "a:1"), what="a's lease to lapse")

    retaken = rooms.renew(ROOM, ["a:1"], limit=1)
    wait_for(lambda: not rooms.held(ROOM, "a:1"), what="a's lease to lapse again")
    assert take(rooms, "b", threshold=1) is Take.TAKEN  # the slot goes to b meanwhile
    lost = rooms.renew(ROOM, ["a:1"], limit=1)

    assert retaken == [Renewal.RETAKEN]
    assert lost == [Renewal.LOST]
    assert rooms.holders(ROOM) == ["b:1"]


def test_a_rebuild_restores_leases_and_the_waiting_set_and_marks_the_room_ready(redis_client: redis.Redis) -> None:
    rooms = Rooms(redis_client, ttl_s=30)
    assert not rooms.ready(ROOM) and rooms.lock_rebuild(ROOM) and not rooms.lock_rebuild(ROOM)

    rooms.rebuild(ROOM, ["x:3"], [entry("y"), entry("z", user="u2")])

    snapshot = rooms.snapshot(ROOM)
    assert snapshot.ready and snapshot.in_flight == 1
    assert {(e.job_id, e.user_id) for e in snapshot.waiting} == {("y", "u1"), ("z", "u2")}
    assert rooms.lock_rebuild(ROOM)  # the rebuild let go of its lock


def test_a_rebuild_keeps_a_job_enqueued_while_it_read_the_database(redis_client: redis.Redis) -> None:
    rooms = Rooms(redis_client, ttl_s=30)
    rooms.enqueue(ROOM, entry("late"))  # arrived after the rebuilder's read, before its write

    rooms.rebuild(ROOM, [], [entry("y")])

    assert {e.job_id for e in rooms.snapshot(ROOM).waiting} == {"late", "y"}


def test_one_admission_turn_per_room_and_a_request_meanwhile_buys_one_more_pass(redis_client: redis.Redis) -> None:
    rooms = ready_room(redis_client)

    assert rooms.enter_admission(ROOM, "first", ttl_s=30)
    assert not rooms.enter_admission(ROOM, "second", ttl_s=30)  # the first is passing: it passes again
    assert rooms.leave_admission(ROOM, "first", ttl_s=30)  # ... so its turn goes on
    assert not rooms.enter_admission(ROOM, "third", ttl_s=30)
    assert rooms.leave_admission(ROOM, "first", ttl_s=30)
    assert not rooms.leave_admission(ROOM, "first", ttl_s=30)  # nobody asked since: the turn ends
    assert rooms.enter_admission(ROOM, "fourth", ttl_s=30)  # and the next caller takes it


def test_an_admission_turn_ended_by_its_lease_is_not_given_back_by_its_late_holder(redis_client: redis.Redis) -> None:
    rooms = ready_room(redis_client)
    assert rooms.enter_admission(ROOM, "dead", ttl_s=30)
    redis_client.delete(keys(ROOM)["admitting"])  # the lease ran out (its holder stalled)
    assert rooms.enter_admission(ROOM, "next", ttl_s=30)

    assert not rooms.leave_admission(ROOM, "dead", ttl_s=30)
    assert not rooms.enter_admission(ROOM, "other", ttl_s=30)  # still the next caller's turn
