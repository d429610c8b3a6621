"""The bare model server bounds what a client can hold: header size, header and body time; a
client hanging up mid-body is counted as 499, never as a server error.

Raw sockets play the hostile clients, since an HTTP library would not send half a request.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import httpx
import orjson
import pytest

from harness.procs import wait_until
from harness.servers import (
    ServerHandle,
    feature_frame,
    holdout_features,
    landing_frame,
    model_server,
    request_body,
    wait_landed,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

READ_TIMEOUT = 1.5  # small, so stalled clients are answered quickly
COLUMNS = feature_frame().columns
GOOD = request_body(COLUMNS, holdout_features().head(2).rows())
STATUS = re.compile(rb"^HTTP/1\.1 (\d{3}) ")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> ServerHandle:
    with model_server(
        tmp_path_factory.mktemp("limits") / "wh", read_timeout=READ_TIMEOUT, flush_interval=0.2
    ) as handle:
        yield handle


def head(path: str, content_length: int | None = None, extra: bytes = b"") -> bytes:
    """Return a request's head; ``extra`` are more header lines, each ending with CRLF."""
    lines = [f"POST {path} HTTP/1.1", "host: 127.0.0.1", "content-type: application/json"]
    if content_length is not None:
        lines.append(f"content-length: {content_length}")
    return "\r\n".join(lines).encode() + b"\r\n" + extra + b"\r\n"


def answer(sock: socket.socket, timeout: float) -> bytes:
    """Read until the server closes the connection (or ``timeout``); what the client saw."""
    sock.settimeout(timeout)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return got


def status_of(raw: bytes) -> int | None:
    match = STATUS.match(raw)
    return int(match.group(1)) if match else None


def requests_by_status(server: ServerHandle) -> dict[tuple[str, str], float]:
    pattern = re.compile(r'driftlake_http_requests_total\{path="([^"]*)",status="(\d+)"\}')
    out = {}
    for key, value in server.metrics().items():
        match = pattern.fullmatch(key)
        if match:
            out[match.group(1), match.group(2)] = value
    return out


def post_good(server: ServerHandle) -> httpx.Response:
    resp = httpx.post(
        f"{server.url}/get-prediction",
        content=GOOD,
        headers={"content-type": "application/json"},
        timeout=30,
        trust_env=False,
    )
    assert resp.status_code == 200, resp.text
    return resp


def abort_mid_body(port: int, path: str = "/get-prediction") -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head(path, len(GOOD)) + GOOD[: len(GOOD) // 2])


def test_clients_hanging_up_mid_body_are_499_not_5xx(server):
    before = requests_by_status(server)
    for i in range(5):
        abort_mid_body(server.port, ("/get-prediction", "/model/get-prediction")[i % 2])

    def aborted() -> float:
        counts = requests_by_status(server)
        return sum(v - before.get(k, 0) for k, v in counts.items() if k[1] == "499") >= 5

    wait_until(aborted, timeout=15)
    counts = requests_by_status(server)
    for path, aborts in (("/get-prediction", 3), ("/model/get-prediction", 2)):
        assert counts[path, "499"] - before.get((path, "499"), 0) == aborts
    assert not {k: v for k, v in counts.items() if k[1].startswith("5") and v}, counts
    logs = server.logs()
    assert "Traceback" not in logs and "Exception in ASGI" not in logs
    assert logs.count("event=client_disconnected") >= 5
    post_good(server)


def test_a_1_mb_header_gets_431_and_the_server_keeps_serving(server):
    # a large but reasonable header block (cookies, tracing) is still served
    resp = httpx.get(
        f"{server.url}/healthz", headers={"x-pad": "a" * 16_000}, timeout=10, trust_env=False
    )
    assert resp.status_code == 200
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nx-big: " + b"a" * (1 << 20))
        sock.sendall(b"\r\n\r\n")
        raw = answer(sock, timeout=10)
    assert status_of(raw) == 431, raw[:200]
    assert b"request headers are over 65536 bytes" in raw
    assert time.monotonic() - started < 8
    assert requests_by_status(server)["other", "431"] >= 1
    post_good(server)


def test_a_stalled_body_gets_408_within_the_read_timeout(server):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head("/get-prediction", len(GOOD)) + GOOD[: len(GOOD) // 2])
        raw = answer(sock, timeout=READ_TIMEOUT + 10)  # ends when the server closes
    took = time.monotonic() - started
    assert status_of(raw) == 408, raw[:300]
    assert READ_TIMEOUT - 0.1 < took < READ_TIMEOUT + 5
    assert b"connection: close" in raw.lower()
    detail = orjson.loads(raw.partition(b"\r\n\r\n")[2])["detail"][0]
    assert detail["loc"] == ["body"] and detail["type"] == "timeout"
    assert requests_by_status(server)["/get-prediction", "408"] >= 1
    post_good(server)


def test_stalled_headers_get_408_within_the_read_timeout(server):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /get-prediction HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        raw = answer(sock, timeout=READ_TIMEOUT + 10)
    assert status_of(raw) == 408, raw[:300]
    assert time.monotonic() - started < READ_TIMEOUT + 5
    post_good(server)


@pytest.mark.timeout(90)
def test_refused_and_aborted_requests_capture_nothing(tmp_path: Path):
    with model_server(tmp_path / "wh", read_timeout=READ_TIMEOUT, flush_interval=0.2) as handle:
        abort_mid_body(handle.port)
        with socket.create_connection(("127.0.0.1", handle.port), timeout=10) as sock:
            sock.sendall(
                head("/get-prediction", len(GOOD), b"x-big: %s\r\n" % (b"a" * (1 << 20))) + GOOD
            )
            assert status_of(answer(sock, timeout=10)) == 431
        with socket.create_connection(("127.0.0.1", handle.port), timeout=10) as sock:
            sock.sendall(head("/get-prediction", len(GOOD)) + GOOD[:-5])
            assert status_of(answer(sock, timeout=READ_TIMEOUT + 10)) == 408
        ids = post_good(handle).json()["request_ids"]
        wait_landed(handle.warehouse, ids)
        assert sorted(landing_frame(handle.warehouse)["request_id"].to_list()) == sorted(ids)
