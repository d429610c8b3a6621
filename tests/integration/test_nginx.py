"""The shipped nginx.conf, run by a real nginx, spreads predictions over every replica.

Replicas here are tiny stdlib HTTP servers on loopback addresses that say which one answered
(this is about routing; the real model servers are tested elsewhere). ``model-server`` is
resolved through a loopback DNS stub, as Docker's DNS does for a scaled compose service.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack
from http.server import ThreadingHTTPServer

import httpx
import pytest

from harness.nginx import NGINX_CONF, gateway_running
from harness.procs import free_port_on, require_binary
from harness.stubs import QuietHandler, serving_in_thread

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
PAYLOAD = {"features": {"columns": ["a", "b"], "data": [[1.0, 2.0]]}}


class _Replica(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int) -> None:
        super().__init__((host, port), _Handler)
        self.name = host
        self.seen: list[dict[str, str]] = []


class _Handler(QuietHandler):
    server: _Replica

    def do_POST(self) -> None:
        self.read_json()
        self.server.seen.append(
            {
                "path": self.path,
                "xff": self.headers.get("X-Forwarded-For", ""),
                "real_ip": self.headers.get("X-Real-IP", ""),
            }
        )
        self.reply(200, json.dumps({"replica": self.server.name, "path": self.path}).encode())


def replica(host: str, port: int) -> AbstractContextManager[_Replica]:
    """A replica answering on ``host:port`` until the block ends."""
    return serving_in_thread(_Replica(host, port))


@pytest.fixture
def replicas() -> Iterator[tuple[int, dict[str, _Replica]]]:
    """Three replicas on 127.0.0.2-4, one shared port, like compose containers."""
    require_binary("nginx")
    port = free_port_on(HOSTS)
    with ExitStack() as stack:
        yield port, {h: stack.enter_context(replica(h, port)) for h in HOSTS}


def predict(client: httpx.Client, path: str = "/get-prediction", **kw) -> str:
    resp = client.post(path, json=PAYLOAD, **kw)
    assert resp.status_code == 200, resp.text
    return resp.json()["replica"]


def test_shipped_file_passes_nginx_t(tmp_path):
    nginx = require_binary("nginx")
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.read_text())
    prefix = f"{tmp_path}/"
    result = subprocess.run(
        [nginx, "-t", "-p", prefix, "-c", str(conf), "-g", f"pid {prefix}nginx.pid;"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def test_balances_both_paths_over_every_replica_and_forwards_client_ip(tmp_path, replicas):
    port, servers = replicas
    two = HOSTS[:2]
    with (
        gateway_running(tmp_path, replicas=two, replica_port=port) as gw,
        httpx.Client(base_url=gw.url, timeout=5, trust_env=False) as client,
    ):
        answered = Counter(
            predict(client, path)
            for _ in range(30)
            for path in ("/get-prediction", "/model/get-prediction")
        )
        assert set(answered) == set(two), answered
        assert min(answered.values()) >= 10, answered  # 60 requests over 2: far from lopsided

        predict(client, headers={"X-Forwarded-For": "203.0.113.9"})

    seen = [s for h in two for s in servers[h].seen]
    assert {s["path"] for s in seen} == {"/get-prediction", "/model/get-prediction"}
    assert all(s["real_ip"] == "127.0.0.1" for s in seen)
    assert all(s["xff"].endswith("127.0.0.1") for s in seen)
    assert any(s["xff"] == "203.0.113.9, 127.0.0.1" for s in seen)
    assert servers[HOSTS[2]].seen == []


def test_replicas_added_and_removed_while_running_are_followed(tmp_path, replicas):
    port, servers = replicas
    with (
        gateway_running(tmp_path, replicas=HOSTS[:2], replica_port=port) as gw,
        httpx.Client(base_url=gw.url, timeout=5, trust_env=False) as client,
    ):
        assert gw.dns is not None
        assert {predict(client) for _ in range(20)} == set(HOSTS[:2])  # resolved and cached
        # scale up: the new replica gets traffic once the resolver's cache (valid=5s) expires
        gw.dns.set("model-server", HOSTS)
        deadline = time.monotonic() + 15
        while predict(client) != HOSTS[2]:
            assert time.monotonic() < deadline, "the added replica got no request within 15 s"

        # scale down: a stopped replica still in the DNS cache costs no failed request,
        # nginx retries the refused connection on another replica
        gw.dns.set("model-server", [HOSTS[0], HOSTS[2]])
        servers[HOSTS[1]].shutdown()
        servers[HOSTS[1]].server_close()
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            assert predict(client) in (HOSTS[0], HOSTS[2])
            time.sleep(0.01)
    # the stopped replica was still tried while cached, and the retry hid it from clients
    refused = [
        line
        for line in (tmp_path / "error.log").read_text().splitlines()
        if "Connection refused" in line and f"http://{HOSTS[1]}:{port}" in line
    ]
    assert refused


def test_no_replica_yet_is_a_fast_502_and_the_gateway_stays_up(tmp_path):
    with (
        gateway_running(tmp_path, replicas=[], replica_port=8000) as gw,
        httpx.Client(base_url=gw.url, timeout=10, trust_env=False) as client,
    ):
        started = time.monotonic()
        resp = client.post("/get-prediction", json=PAYLOAD)
        assert resp.status_code == 502
        assert time.monotonic() - started < 5
        assert client.get("/nginx-health").status_code == 200


def test_health_status_limits_and_unknown_paths(tmp_path, replicas):
    port, _ = replicas
    with (
        gateway_running(tmp_path, replicas=HOSTS[:1], replica_port=port) as gw,
        httpx.Client(base_url=gw.url, timeout=5, trust_env=False) as client,
    ):
        health = client.get("/nginx-health")
        assert (health.status_code, health.text) == (200, "ok\n")
        status = client.get("/nginx-status")
        assert status.status_code == 200 and "Active connections" in status.text
        assert client.get("/metrics").status_code == 404
        big = b"0" * (3 * 1024 * 1024)
        resp = client.post("/get-prediction", content=big)
        assert resp.status_code == 413


def test_static_upstream_mode_balances_over_127_0_0_1_ports(tmp_path):
    require_binary("nginx")
    with ExitStack() as stack:
        servers = [
            stack.enter_context(replica("127.0.0.1", free_port_on(["127.0.0.1"]))) for _ in range(2)
        ]
        backends = [f"127.0.0.1:{s.server_address[1]}" for s in servers]
        gw = stack.enter_context(gateway_running(tmp_path, static_backends=backends))
        client = stack.enter_context(httpx.Client(base_url=gw.url, timeout=5, trust_env=False))
        for _ in range(10):
            predict(client)
    assert [len(s.seen) for s in servers] == [5, 5]  # round robin
