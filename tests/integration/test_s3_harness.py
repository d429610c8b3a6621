"""The S3 harness: moto's real server takes buckets and objects, the ``s3_url`` fixture's
environment alone reaches it, and the fault proxy passes, throttles (503 SlowDown), resets
and stalls requests of real clients (obstore, boto3, httpx) on kept-alive connections."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator

import boto3
import httpx
import obstore as obs
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from obstore.exceptions import BaseError
from obstore.store import S3Store

from harness.procs import wait_until
from harness.s3 import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    FaultProxy,
    MotoServer,
    new_bucket_name,
    s3_store,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def bucket(moto: MotoServer) -> str:
    return moto.create_bucket()


@pytest.fixture
def proxy(moto: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(moto.endpoint) as proxy:
        yield proxy


def boto3_client(endpoint: str) -> object:
    """boto3 without retries, so one call is one request."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        region_name=REGION,
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=2),
    )


def test_bucket_names_are_valid_and_unique() -> None:
    names = {new_bucket_name() for _ in range(100)}
    assert len(names) == 100
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", name) for name in names)


def test_moto_keeps_buckets_and_objects(moto: MotoServer) -> None:
    first, second = moto.create_bucket(), moto.create_bucket("explicit-" + new_bucket_name())
    assert second.startswith("explicit-wh-") and first != second
    store = s3_store(moto.endpoint, first)
    obs.put(store, "wh/a.parquet", b"one")
    obs.put(store, "other/b", b"two")
    assert bytes(obs.get(store, "wh/a.parquet").bytes()) == b"one"
    assert moto.keys(first, "wh") == ["wh/a.parquet"]
    assert moto.keys(first) == ["other/b", "wh/a.parquet"]
    assert moto.keys(second) == []


def test_s3_url_environment_alone_reaches_moto(s3_url: str, moto: MotoServer) -> None:
    bucket = re.fullmatch(r"s3://([a-z0-9-]+)/wh", s3_url)
    assert bucket, s3_url
    # endpoint, credentials and region come from the variables the fixture set
    store = S3Store.from_url(s3_url, client_options={"allow_http": True})
    obs.put(store, "x", b"from the environment")
    assert moto.keys(bucket[1]) == ["wh/x"]


def test_pass_forwards_requests_and_bodies(proxy: FaultProxy, bucket: str) -> None:
    store = s3_store(proxy.endpoint, bucket)
    payload = bytes(range(256)) * 4096  # 1 MiB
    for i in range(5):
        obs.put(store, f"wh/{i}", payload)
        assert bytes(obs.get(store, f"wh/{i}").bytes()) == payload
    assert proxy.requests_seen == 10 and proxy.faults_injected == 0
    assert proxy.requests[0] == f"PUT /{bucket}/wh/0 HTTP/1.1"


def test_pass_keeps_client_connections_alive(proxy: FaultProxy, bucket: str) -> None:
    """moto closes every connection after one answer; the proxy keeps the client's open."""
    with httpx.Client(trust_env=False, timeout=5) as client:
        for i in range(3):
            url = f"{proxy.endpoint}/{bucket}/k{i}"
            assert client.put(url, content=b"v").status_code == 200
            assert client.head(url).status_code == 403  # unsigned: moto refuses, framed
    assert proxy.requests_seen == 6
    assert proxy.connections == 1


def test_pass_relays_100_continue_to_boto3(
    proxy: FaultProxy, bucket: str, moto: MotoServer
) -> None:
    """boto3 sends ``Expect: 100-continue`` and waits a second for it before the body."""
    s3 = boto3_client(proxy.endpoint)
    s3.put_object(Bucket=bucket, Key="warm-up", Body=b"0")
    started = time.monotonic()
    s3.put_object(Bucket=bucket, Key="k", Body=b"x" * 100_000)
    assert time.monotonic() - started < 0.8
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x" * 100_000
    assert moto.keys(bucket) == ["k", "warm-up"]


def test_slowdown_answers_503_to_obstore_and_boto3(
    proxy: FaultProxy, bucket: str, moto: MotoServer
) -> None:
    store = s3_store(proxy.endpoint, bucket)
    s3 = boto3_client(proxy.endpoint)
    obs.put(store, "before", b"1")  # the connection exists before the mode changes
    proxy.mode = "slowdown"
    with pytest.raises(BaseError, match=r"(?s)503.*<Code>SlowDown</Code>"):
        obs.put(store, "during", b"2")
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="during-boto3", Body=b"3" * 100_000)
    assert err.value.response["Error"]["Code"] == "SlowDown"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert proxy.faults_injected == 2
    assert moto.keys(bucket) == ["before"]

    proxy.mode = "pass"
    obs.put(store, "after", b"4")
    s3.put_object(Bucket=bucket, Key="after-boto3", Body=b"5")
    assert moto.keys(bucket) == ["after", "after-boto3", "before"]


def test_slowdown_keeps_httpx_connection_in_step(proxy: FaultProxy, bucket: str) -> None:
    """503s to a HEAD (no body) and to a chunked upload (body read and dropped) leave the
    kept-alive connection at a request boundary."""
    url = f"{proxy.endpoint}/{bucket}/k"

    def chunks() -> Iterator[bytes]:
        yield b"a" * 10
        yield b"b" * 70_000

    with httpx.Client(trust_env=False, timeout=5) as client:
        proxy.mode = "slowdown"
        head = client.head(url)
        assert head.status_code == 503 and head.content == b""
        put = client.put(url, content=chunks())
        assert put.status_code == 503 and b"<Code>SlowDown</Code>" in put.content
        proxy.mode = "pass"
        assert client.put(url, content=chunks()).status_code == 200
    assert proxy.connections == 1
    assert proxy.faults_injected == 2


def test_reset_breaks_the_request_and_pass_recovers(
    proxy: FaultProxy, bucket: str, moto: MotoServer
) -> None:
    store = s3_store(proxy.endpoint, bucket)
    obs.put(store, "k", b"v")
    proxy.mode = "reset"
    with pytest.raises(BaseError, match="error sending request") as err:
        obs.get(store, "k").bytes()
    assert "non-2xx" not in str(err.value)
    with httpx.Client(trust_env=False, timeout=5) as client, pytest.raises(httpx.TransportError):
        client.put(f"{proxy.endpoint}/{bucket}/httpx", content=b"x")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as raw:
        raw.sendall(f"GET /{bucket}/k HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        with pytest.raises(ConnectionResetError):  # an RST, not an orderly close
            raw.recv(1024)
    assert proxy.faults_injected == 3

    proxy.mode = "pass"
    assert bytes(obs.get(store, "k").bytes()) == b"v"
    assert moto.keys(bucket) == ["k"]


def test_stall_holds_a_request_until_the_client_gives_up(
    proxy: FaultProxy, bucket: str, moto: MotoServer
) -> None:
    store = s3_store(proxy.endpoint, bucket, timeout=0.5)
    proxy.mode = "stall"
    with pytest.raises(BaseError, match="error sending request"):
        obs.put(store, "abandoned", b"x")
    proxy.mode = "pass"
    obs.put(store, "next", b"y")
    # the abandoned PUT was dropped, not sent late
    assert moto.keys(bucket) == ["next"]


def test_stall_ends_in_a_closed_connection_when_the_mode_changes(
    proxy: FaultProxy, bucket: str, moto: MotoServer
) -> None:
    store = s3_store(proxy.endpoint, bucket, timeout=10)
    proxy.mode = "stall"
    errors: list[BaseException] = []

    def put() -> None:
        try:
            obs.put(store, "held", b"z")
        except BaseError as exc:
            errors.append(exc)

    thread = threading.Thread(target=put)
    thread.start()
    wait_until(lambda: proxy.faults_injected == 1, timeout=5)
    time.sleep(0.2)
    assert thread.is_alive()  # held, although the client would wait 10 s
    proxy.mode = "pass"
    thread.join(5)
    assert not thread.is_alive() and len(errors) == 1
    assert "non-2xx" not in str(errors[0])
    obs.put(store, "after", b"y")
    assert moto.keys(bucket) == ["after"]


def test_inject_times_and_match(proxy: FaultProxy, bucket: str, moto: MotoServer) -> None:
    retrying = s3_store(proxy.endpoint, bucket, max_retries=3)
    proxy.inject("slowdown", times=2)
    obs.put(retrying, "retried", b"r")  # two 503s, then the third attempt passes
    assert proxy.requests_seen == 3 and proxy.faults_injected == 2
    assert proxy.mode == "pass"

    store = s3_store(proxy.endpoint, bucket)
    proxy.inject("slowdown", match=r"^PUT ")
    assert bytes(obs.get(store, "retried").bytes()) == b"r"
    with pytest.raises(BaseError, match="SlowDown"):
        obs.put(store, "refused", b"x")
    assert proxy.mode == "slowdown"
    assert moto.keys(bucket) == ["retried"]


def test_mode_must_be_known(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        proxy.mode = "explode"  # type: ignore[assignment]
