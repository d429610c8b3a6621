"""The shipped nginx.conf's per-client limits, run by a real nginx: a greedy client gets 429s
and cannot starve another client.

Clients are told apart by address, as nginx's ``$binary_remote_addr`` is: the greedy client
binds its sockets to 127.0.0.2, the other client connects from 127.0.0.1. The replica behind
the gateway (on 127.0.0.3, found through the DNS stub as in production) is a stdlib HTTP server
with a fixed number of request slots, like a model server whose capacity is spent; it holds
the greedy client's requests until the test releases them, so "starved" means "no slot left",
not "slow". The limits are read from nginx.conf, so these tests follow its documented defaults.
"""

from __future__ import annotations

import json
import re
import resource
import selectors
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from harness.nginx import NGINX_CONF, Gateway, gateway_running
from harness.procs import free_port_on, require_binary, wait_until
from harness.stubs import QuietHandler, serving_in_thread

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

GREEDY = "127.0.0.2"  # the greedy client's source address
REPLICA = "127.0.0.3"
PAYLOAD = b'{"features": {"columns": ["a"], "data": [[1.0]]}}'
SLOTS = 100  # requests the replica serves at once: more than one client's limit_conn


def _shipped(pattern: str) -> int:
    m = re.search(pattern, NGINX_CONF.read_text())
    assert m, f"nginx.conf has no {pattern!r}"
    return int(m.group(1))


LIMIT_CONN = _shipped(r"limit_conn per_client_conn (\d+);")
RATE = _shipped(r"zone=per_client_rate:\w+ rate=(\d+)r/s;")
BURST = _shipped(r"limit_req zone=per_client_rate burst=(\d+)")
KEEPALIVE_REQUESTS = _shipped(r"keepalive_requests (\d+);")  # then nginx closes the connection


# ----------------------------------------------------------------------------- the replica


class _Replica(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # nginx may connect hundreds of times at once

    def __init__(self, host: str, port: int) -> None:
        super().__init__((host, port), _Handler)
        self.slots = threading.Semaphore(SLOTS)
        self.hold_greedy = False  # True: the greedy client's requests wait for `release`
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.held: Counter[str] = Counter()  # client address -> requests held right now
        self.peak: Counter[str] = Counter()  # client address -> most held at once


class _Handler(QuietHandler):
    server: _Replica

    def do_POST(self) -> None:
        self.read_body()
        client = self.headers.get("X-Real-IP", "")
        srv = self.server
        with srv.lock:
            srv.held[client] += 1
            srv.peak[client] = max(srv.peak[client], srv.held[client])
        try:
            with srv.slots:
                if client == GREEDY and srv.hold_greedy:
                    srv.release.wait(30)
                self.reply(200, json.dumps({"client": client}).encode())
        finally:
            with srv.lock:
                srv.held[client] -= 1


@contextmanager
def replica(port: int) -> Iterator[_Replica]:
    """The replica on 127.0.0.3:``port``; held requests are released before it stops."""
    with serving_in_thread(_Replica(REPLICA, port)) as server:
        try:
            yield server
        finally:
            server.release.set()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[Gateway, _Replica]]:
    """The shipped nginx.conf in front of one replica on 127.0.0.3."""
    require_binary("nginx")
    port = free_port_on([REPLICA])
    with ExitStack() as stack:
        server = stack.enter_context(replica(port))
        gw = stack.enter_context(gateway_running(tmp_path, replicas=[REPLICA], replica_port=port))
        yield gw, server


# ----------------------------------------------------------------------------- raw HTTP


def greedy_socket(gw: Gateway) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gw.port), timeout=10, source_address=(GREEDY, 0))


def post_request() -> bytes:
    head = (
        "POST /get-prediction HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(PAYLOAD)}\r\n\r\n"
    )
    return head.encode() + PAYLOAD


def read_responses(sock: socket.socket, count: int, timeout: float) -> list[tuple[int, bytes]]:
    """Read up to ``count`` HTTP/1.1 responses (nginx sends Content-Length) from ``sock``."""
    out: list[tuple[int, bytes]] = []
    buf = b""
    deadline = time.monotonic() + timeout
    while len(out) < count:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = buf[:end].decode("latin-1")
            length = re.search(r"(?im)^content-length:\s*(\d+)", head)
            size = int(length.group(1)) if length else 0
            if len(buf) >= end + 4 + size:
                out.append((int(head.split(" ", 2)[1]), buf[end + 4 : end + 4 + size]))
                buf = buf[end + 4 + size :]
                continue
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        buf += chunk
    return out


def other_client_predicts(gw: Gateway, requests: int = 20, timeout: float = 3.0) -> list[int]:
    """The well-behaved client (127.0.0.1): sequential predictions; their status codes."""
    with httpx.Client(base_url=gw.url, timeout=timeout, trust_env=False) as client:
        return [
            client.post(
                "/get-prediction", content=PAYLOAD, headers={"content-type": "application/json"}
            ).status_code
            for _ in range(requests)
        ]


def nginx_workers(master: int) -> int:
    """The number of worker processes of the nginx master ``master``."""
    count = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        count += int(fields[1]) == master
    return count


# ----------------------------------------------------------------------------- tests


def test_a_greedy_client_gets_429_past_its_limit_and_another_client_is_still_served(gateway):
    gw, server = gateway
    greedy_requests = 3 * LIMIT_CONN + 100
    server.hold_greedy = True
    with ExitStack() as stack:
        socks = [stack.enter_context(greedy_socket(gw)) for _ in range(greedy_requests)]
        selector = stack.enter_context(selectors.DefaultSelector())
        for sock in socks:
            sock.sendall(post_request())
            selector.register(sock, selectors.EVENT_READ)
        # every request past the limit is answered at once; the rest are held by the replica
        rejected: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + 10
        while len(rejected) < greedy_requests - LIMIT_CONN and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.5):
                selector.unregister(key.fileobj)
                rejected += read_responses(key.fileobj, 1, timeout=5)
        assert len(rejected) == greedy_requests - LIMIT_CONN, Counter(s for s, _ in rejected)
        wait_until(lambda: server.held[GREEDY] >= LIMIT_CONN, timeout=5)

        # the other address still gets a replica slot: every request answered, none waits
        statuses = other_client_predicts(gw)
        assert statuses == [200] * len(statuses), Counter(statuses)

        # the replica never held more of the greedy client's requests than the limit
        assert server.peak[GREEDY] == LIMIT_CONN, server.peak
        server.release.set()
        held = [read_responses(key.fileobj, 1, timeout=10) for key in selector.get_map().values()]

    assert Counter(status for status, _ in rejected) == {429: greedy_requests - LIMIT_CONN}
    assert Counter(status for rs in held for status, _ in rs) == {200: LIMIT_CONN}
    detail = json.loads(rejected[0][1])["detail"]
    assert "too many requests from your address" in detail and f"{LIMIT_CONN} at once" in detail
    log = (gw.log_path.parent / "error.log").read_text()
    assert 'limiting connections by zone "per_client_conn"' in log


def test_thousands_of_idle_connections_from_one_client_leave_room_for_another(gateway):
    gw, _ = gateway
    # more than a worker_connections of 1024 could hold, on every worker
    idle = 1100 * nginx_workers(gw.proc.pid)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = idle + 512
    if soft != resource.RLIM_INFINITY and soft < need:
        assert hard == resource.RLIM_INFINITY or hard >= need, (
            f"this test holds {idle} sockets; raise the open-files limit (ulimit -n {need})"
        )
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    try:
        with ExitStack() as stack:
            for _ in range(idle):  # connected, never a byte sent: limit_conn cannot see these
                stack.enter_context(greedy_socket(gw))
            statuses = other_client_predicts(gw)
            assert statuses == [200] * len(statuses), Counter(statuses)
            status = httpx.get(f"{gw.url}/nginx-status", timeout=3, trust_env=False).text
            active = int(re.search(r"Active connections:\s*(\d+)", status).group(1))
            assert active > idle  # the greedy connections were all held open meanwhile
        assert (
            "worker_connections are not enough"
            not in (gw.log_path.parent / "error.log").read_text()
        )
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_requests_over_the_rate_limit_get_429_and_other_addresses_keep_their_own(gateway):
    gw, _ = gateway
    # One connection pipelines requests for a page nginx answers itself (stub_status), far
    # faster than RATE/s, then predictions: the rate is per address, not per path, so the
    # predictions meet a spent budget, while another address's budget is untouched.
    sent = KEEPALIVE_REQUESTS  # nginx closes a connection after this many requests
    predictions = 50
    assert sent - predictions > 2 * BURST + RATE
    status_page = b"GET /nginx-status HTTP/1.1\r\nHost: gateway\r\n\r\n"
    pipeline = status_page * (sent - predictions) + post_request() * predictions
    with greedy_socket(gw) as sock:
        sender = threading.Thread(target=sock.sendall, args=(pipeline,), daemon=True)
        sender.start()
        responses = read_responses(sock, sent, timeout=30)
        sender.join(timeout=5)
    other_statuses = other_client_predicts(gw)

    assert len(responses) == sent  # every request answered, none dropped or reset
    flood = Counter(status for status, _ in responses[:-predictions])
    assert set(flood) == {200, 429}, flood
    assert flood[200] > BURST, flood  # the burst is served at once (nodelay)
    assert flood[429] > sent // 2, flood
    limited = next(body for status, body in responses if status == 429)
    assert "too many requests from your address" in json.loads(limited)["detail"]

    greedy_predictions = [status for status, _ in responses[-predictions:]]
    assert greedy_predictions[0] == 429, greedy_predictions
    assert set(greedy_predictions) <= {200, 429}, greedy_predictions
    assert other_statuses == [200] * len(other_statuses), Counter(other_statuses)
