"""The embedded services `genq run` starts: a leftover Redis of a killed run is replaced, a stranger
is not; a taken port is named with its holder; the S3 server's objects outlive a restart."""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import redis
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from infra.embedded import EmbeddedRedis, EmbeddedS3, PortTaken, check_port, free_port


def test_a_free_port_is_one_no_outbound_connection_can_take_before_its_server_binds_it() -> None:
    # A port from the ephemeral range may become the source port of any connection on the machine
    # between the pick and the bind (CI saw `genq run` fail to start a simulator so).
    first_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(30)]

    assert len(set(ports)) == len(ports)
    assert all(1024 <= port < first_ephemeral for port in ports)
    for port in ports:
        check_port("127.0.0.1", port)  # raises PortTaken if something listens there


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
        with pytest.raises(PortTaken) as info:
            EmbeddedRedis(port, workdir=tmp_path / "ours").start(timeout_s=2)
        assert redis.Redis(port=port).ping()
        assert f"redis-server 127.0.0.1:{port}, in {(tmp_path / 'other').resolve()}" in str(info.value)
    finally:
        other.stop()


# --- a taken port ----------------------------------------------------------------------------------


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port this test process listens on (127.0.0.1), as a stranger's server would."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_taken_port_names_its_holder(taken_port: int) -> None:
    with pytest.raises(PortTaken) as info:
        check_port("127.0.0.1", taken_port, setting="EMBEDDED_S3_PORT")

    message = str(info.value)
    assert f"port {taken_port} is taken by pid {os.getpid()} (" in message
    assert message.endswith("set EMBEDDED_S3_PORT to use another port")


@pytest.mark.parametrize("service", ["redis", "s3"])
def test_an_embedded_service_on_a_taken_port_says_so(service: str, taken_port: int, tmp_path: Path) -> None:
    server = EmbeddedRedis(taken_port, workdir=tmp_path) if service == "redis" else EmbeddedS3(taken_port)

    with pytest.raises(PortTaken) as info:
        server.start()

    assert (info.value.port, info.value.holder is not None) == (taken_port, True)
    assert f"pid {os.getpid()}" in str(info.value)


# --- S3 objects that outlive a restart ---------------------------------------------------------------


def s3_client(url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="genq-local",
        aws_secret_access_key="genq-local-secret",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def test_objects_stored_on_disk_are_there_after_a_restart(tmp_path: Path) -> None:
    """Plain, multipart and browser (presigned POST) uploads survive; a deleted object stays deleted."""
    port, data = free_port(), tmp_path / "s3"
    big = os.urandom(6 * 1024 * 1024)  # over the 5 MiB part size: two parts
    first = EmbeddedS3(port, data_dir=data).start()
    try:
        s3 = s3_client(first.url)
        s3.create_bucket(Bucket="genq-results")
        s3.put_object(Bucket="genq-results", Key="results/j1/0.png", Body=b"replaced", ContentType="text/plain")
        s3.put_object(Bucket="genq-results", Key="results/j1/0.png", Body=b"\x89PNG one", ContentType="image/png")
        s3.put_object(Bucket="genq-results", Key="results/j1/gone.png", Body=b"deleted")
        s3.delete_objects(Bucket="genq-results", Delete={"Objects": [{"Key": "results/j1/gone.png"}]})
        parts = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
        s3.upload_fileobj(io.BytesIO(big), "genq-results", "results/j1/0.mp4", Config=parts)
        grant = s3.generate_presigned_post(Bucket="genq-results", Key="uploads/u1/a.png", ExpiresIn=60)
        upload = httpx.post(grant["url"], data=grant["fields"], files={"file": ("a.png", b"from a browser")})
        assert upload.status_code == 204
    finally:
        first.stop()

    second = EmbeddedS3(port, data_dir=data).start()
    try:
        s3 = s3_client(second.url)
        listed = [o["Key"] for o in s3.list_objects_v2(Bucket="genq-results")["Contents"]]
        png = s3.get_object(Bucket="genq-results", Key="results/j1/0.png")
        video = s3.get_object(Bucket="genq-results", Key="results/j1/0.mp4")["Body"].read()
        link = s3.generate_presigned_url("get_object", Params={"Bucket": "genq-results", "Key": "uploads/u1/a.png"})
        browser = httpx.get(link).content
    finally:
        second.stop()

    assert listed == ["results/j1/0.mp4", "results/j1/0.png", "uploads/u1/a.png"]
    assert (png["Body"].read(), png["ContentType"]) == (b"\x89PNG one", "image/png")
    assert video == big
    assert browser == b"from a browser"
    assert len(list((data / "genq-results").glob("*.data"))) == 3  # the replaced bytes are gone


def test_without_a_data_directory_nothing_is_kept(tmp_path: Path) -> None:
    port = free_port()
    first = EmbeddedS3(port).start()
    try:
        s3_client(first.url).create_bucket(Bucket="genq-results")
    finally:
        first.stop()

    second = EmbeddedS3(port).start()
    try:
        buckets = s3_client(second.url).list_buckets()["Buckets"]
    finally:
        second.stop()

    assert buckets == []


def test_a_write_cut_short_by_a_hard_stop_leaves_the_last_whole_object(tmp_path: Path) -> None:
    """Killed after writing new bytes but before their description: the old object, nothing mixed."""
    port, data = free_port(), tmp_path / "s3"
    first = EmbeddedS3(port, data_dir=data).start()
    try:
        s3 = s3_client(first.url)
        s3.create_bucket(Bucket="genq-results")
        s3.put_object(Bucket="genq-results", Key="results/j1/0.png", Body=b"whole", ContentType="image/png")
    finally:
        first.stop()
    [described] = [p for p in (data / "genq-results").glob("*.json") if p.name != "bucket.json"]
    (described.parent / f"{described.stem}.0123abcd.data").write_bytes(b"half of a newer one")
    (described.parent / f".{described.name}.part").write_bytes(b'{"key": "results/j1/0.png", "et')

    second = EmbeddedS3(port, data_dir=data).start()
    try:
        kept = s3_client(second.url).get_object(Bucket="genq-results", Key="results/j1/0.png")["Body"].read()
    finally:
        second.stop()

    assert kept == b"whole"
    assert sorted(p.name.split(".")[-1] for p in described.parent.iterdir()) == ["data", "json", "json"]
