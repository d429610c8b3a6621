"""harness/netns.py gives each host its own network namespace on one private network: hosts
reach each other by address and nothing else, processes run where they are put, and nothing of
a run is left once its context exits."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from harness.netns import Network, network, require_netns
from harness.procs import free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

FETCH = (
    "import sys, urllib.request as u\n"
    "opener = u.build_opener(u.ProxyHandler({}))\n"
    "print(opener.open(sys.argv[1], timeout=5).read().decode(), end='')\n"
)


@pytest.fixture(autouse=True)
def _netns() -> None:
    require_netns()


def _namespaces(prefix: str) -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in listed.stdout.splitlines() if line.startswith(prefix)}


def _root_links(prefix: str) -> list[str]:
    """Links of the root namespace (veths, bridges) whose name carries ``prefix``."""
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    return [line for line in links.stdout.splitlines() if prefix in line]


def _alive(pid: int) -> bool:
    """``pid`` runs (a zombie waiting for its parent to reap it does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _refused(addr: str, port: int) -> bool:
    try:
        with socket.create_connection((addr, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def _http_server(net: Network, host: str, port: int) -> subprocess.Popen[bytes]:
    (net.workdir(host) / "index.html").write_text(f"served by {host}")
    argv = [sys.executable, "-m", "http.server", "--bind", net.addr(host), str(port)]
    return net.popen(host, argv, log=net.workdir(host) / "http.log")


def test_hosts_reach_each_other_by_address_and_the_run_leaves_nothing(tmp_path: Path) -> None:
    port = free_port()  # free on the root namespace's loopback, so a refusal there means it
    with network(["a", "b", "c"], tmp_dir=tmp_path) as net:
        prefix = net.prefix
        assert len({net.addr(h) for h in net.hosts}) == 3
        made = {net.namespace(h) for h in ("a", "b", "c")} | {f"{prefix}-switch"}
        assert _namespaces(prefix) == made
        assert _root_links(prefix) == [], "veths and the bridge live in the run's namespaces"

        server = _http_server(net, "a", port)
        net.wait_port("b", net.addr("a"), port, timeout=10, proc=server)
        fetched = net.run("b", [sys.executable, "-c", FETCH, net.url("a", port, "/")], timeout=10)
        assert fetched.stdout == "served by a", fetched.stderr

        # the pid Popen holds is the server's own, inside a's namespace (ip netns exec execs)
        where = subprocess.run(["ip", "netns", "identify", str(server.pid)], capture_output=True)
        assert where.stdout.decode().split() == [net.namespace("a")]
        assert b"http.server" in Path(f"/proc/{server.pid}/cmdline").read_bytes()
        assert _refused("127.0.0.1", port), "the server is in a's namespace, not the root's"

        net.add_host("late")  # while a's server runs
        with net.enter("late"):
            got = httpx.get(net.url("a", port, "/"), timeout=5, trust_env=False)
            assert got.text == "served by a"
            assert _refused("127.0.0.1", port), "late's loopback is its own"

        server.kill()
        assert server.wait(5) == -9
        with net.enter("b"):
            assert _refused(net.addr("a"), port), "SIGKILL reached the server, not a wrapper"

    assert _namespaces(prefix) == set()
    assert _root_links(prefix) == []
    assert not any(p.name.startswith(prefix) for p in Path("/run/netns").iterdir())


def test_processes_get_env_and_own_workdirs_and_teardown_kills_what_is_left(
    tmp_path: Path,
) -> None:
    spawn = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '60'], start_new_session=True)\n"
        "open('pids', 'w').write(f\"{os.getpid()} {child.pid} {os.environ['DL_PROBE']}\")\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "DL_PROBE": "passed"}
    with network(["a", "b"], tmp_dir=tmp_path) as net:
        prefix = net.prefix
        assert net.workdir("a") != net.workdir("b")
        assert all(net.workdir(h).is_dir() for h in ("a", "b"))

        seen = net.run("a", [sys.executable, "-c", "import os; print(os.getcwd())"], env=env)
        assert seen.stdout.strip() == str(net.workdir("a"))

        # left running on purpose, with a grandchild in its own session: teardown's job
        net.popen("b", [sys.executable, "-c", spawn], env=env)
        pids_file = net.workdir("b") / "pids"
        wait_until(lambda: pids_file.exists() and pids_file.read_text().count(" ") == 2, 10)
        parent, child, probe = pids_file.read_text().split()
        assert probe == "passed"
        assert _alive(int(parent)) and _alive(int(child))

        with pytest.raises(KeyError):
            net.addr("nowhere")
        with pytest.raises(ValueError):
            net.add_host("Bad Name")

    assert not _alive(int(parent)) and not _alive(int(child))
    assert _namespaces(prefix) == set()
