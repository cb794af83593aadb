"""The embedded Redis `genq run` starts: a leftover of a killed run is replaced, a stranger is not."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from infra.embedded import EmbeddedRedis, free_port


def test_a_leftover_of_ours_is_shut_down_and_replaced(tmp_path: Path) -> None:
    port = free_port()
    first = EmbeddedRedis(port, workdir=tmp_path / "redis").start()
    leftover = first._proc
    first._proc = None  # the supervisor was killed: nobody stops it

    second = EmbeddedRedis(port, workdir=tmp_path / "redis").start()
    try:
        assert leftover is not None and leftover.wait(5) is not None
        assert redis.Redis(port=port).ping()
    finally:
        second.stop()


def test_someone_elses_server_on_the_port_is_left_alone(tmp_path: Path) -> None:
    port = free_port()
    other = EmbeddedRedis(port, workdir=tmp_path / "other").start()
    try:
        with pytest.raises(RuntimeError, match="did not start"):
            EmbeddedRedis(port, workdir=tmp_path / "ours").start(timeout_s=2)
        assert redis.Redis(port=port).ping()
    finally:
        other.stop()
