"""Hosts on one private network on this machine, each its own Linux network namespace.

For tests that need services on distinct hosts (a Dask scheduler and workers that join later,
model servers behind nginx, S3 on its own address) without containers. Needs root and ``ip``
(Debian's iproute2); :func:`require_netns` skips a test otherwise.

One run, every name starting ``dl<run id>``: a "switch" namespace holding only a bridge (the
root namespace's links and routes are never touched); per host a namespace with loopback up
and one end of a veth pair at ``10.213.X.i/24``, the other end a port of the bridge, and a
working directory ``<tmp_dir>/<host>``. Hosts reach each other and nothing else; each has its
own port space, so fixed ports are safe. Teardown (the context's exit, else ``atexit``)
SIGKILLs every process left in the run's namespaces, grandchildren included, then deletes the
namespaces and with them the veth pairs and the bridge.

Example
-------
>>> with network(["s3", "sched"], tmp_dir=tmp_path) as net:
...     argv = [sys.executable, "-m", "http.server", "--bind", net.addr("s3"), "8000"]
...     web = net.popen("s3", argv, log=net.workdir("s3") / "web.log")
...     net.wait_port("sched", net.addr("s3"), 8000, proc=web)
...     net.add_host("w3")                      # while the others run
...     with net.enter("w3"):                   # this thread's sockets are now in w3
...         httpx.get(net.url("s3", 8000), trust_env=False).status_code
200
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from harness._netns_ip import (
    NetnsUnavailable,
    entered,
    ip,
    ip_binary,
    kill_all_in,
    netns_unavailable,
)
from harness.procs import REQUIRE_INTEGRATION

__all__ = ["NetnsUnavailable", "Network", "netns_unavailable", "network", "require_netns"]

_HOST_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


def require_netns() -> None:
    """Skip the calling test if network namespaces are unavailable (a failure under
    ``DRIFTLAKE_REQUIRE_INTEGRATION=1``)."""
    why = netns_unavailable()
    if why is None:
        return
    reason = f"network namespaces are unavailable: {why}"
    if REQUIRE_INTEGRATION:
        pytest.fail(reason + " -- DRIFTLAKE_REQUIRE_INTEGRATION=1 makes this a failure")
    pytest.skip(reason)


class Network:
    """One run's private network; hosts are added with :meth:`add_host`. Use :func:`network`."""

    def __init__(self, tmp_dir: Path, *, octet: int | None = None) -> None:
        self._ip = ip_binary()
        self.prefix = f"dl{secrets.token_hex(3)}"  # + "h254" is 12 chars: veth names fit 15
        # runs' bridges are private: equal subnets never meet; the octet tells logs apart
        self.subnet = f"10.213.{octet if octet is not None else os.getpid() % 254 + 1}.0/24"
        self.tmp_dir = Path(tmp_dir)
        self._hosts: dict[str, int] = {}
        self._namespaces: list[str] = []  # every namespace made, so far, in order
        self._procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._switch = f"{self.prefix}-switch"
        self._bridge = f"{self.prefix}br"
        _LIVE.add(self)
        try:
            self._netns_add(self._switch)
            ip("-n", self._switch, "link", "add", self._bridge, "type", "bridge")
            ip("-n", self._switch, "link", "set", self._bridge, "up")
        except BaseException:
            self.close()
            raise

    def add_host(self, host: str) -> str:
        """Add ``host`` (``[a-z0-9][a-z0-9_-]*``) to the network, now; return its address."""
        if not _HOST_NAME.fullmatch(host):
            raise ValueError(f"host name {host!r} is not [a-z0-9][a-z0-9_-]{{0,31}}")
        with self._lock:
            if self._closed:
                raise RuntimeError("the network is closed")
            if host in self._hosts:
                raise ValueError(f"host {host!r} exists already")
            index = len(self._namespaces)  # the switch is first; a failed add skips a number
            if index > 254:
                raise ValueError("a /24 holds 254 hosts")
            ns = self.namespace(host)
            inner, outer = f"{self.prefix}h{index}", f"{self.prefix}s{index}"
            self._netns_add(ns)
            # both ends are made inside their namespaces: the root namespace never holds them
            ip(
                "link", "add", "name", inner, "netns", ns, "type", "veth",
                "peer", "name", outer, "netns", self._switch,
            )  # fmt: skip
            ip("-n", self._switch, "link", "set", outer, "master", self._bridge, "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{self._address(index)}/24", "dev", inner)
            ip("-n", ns, "link", "set", inner, "up")
            self._hosts[host] = index
        self.workdir(host).mkdir(parents=True, exist_ok=True)
        return self._address(index)

    @property
    def hosts(self) -> list[str]:
        return list(self._hosts)

    def addr(self, host: str) -> str:
        """The IPv4 address of ``host`` on this network."""
        return self._address(self._index(host))

    def url(self, host: str, port: int, path: str = "") -> str:
        return f"http://{self.addr(host)}:{port}{path}"

    def namespace(self, host: str) -> str:
        """The name of ``host``'s network namespace (for ``ip netns exec``, ``ip -n``)."""
        return f"{self.prefix}-{host}"

    def workdir(self, host: str) -> Path:
        """``host``'s own working directory (no two hosts share one)."""
        return self.tmp_dir / host

    def popen(
        self,
        host: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        cwd: Path | None = None,
        start_new_session: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in ``host``: cwd its workdir unless given, ``env`` as given (this
        process's when None), stdout and stderr appended to ``log`` (default
        ``<workdir>/<argv[0] name>.log``). ``ip netns exec`` execs ``argv``, so the returned
        pid is the program's own: ``kill()`` reaches it. With ``start_new_session`` signal its
        whole group (``harness.procs.stop_process(proc, group=True)``); teardown kills
        everything left in the namespace either way."""
        log = Path(log) if log is not None else self.workdir(host) / f"{Path(argv[0]).name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                self._exec(host, argv),
                cwd=cwd if cwd is not None else self.workdir(host),
                env=None if env is None else dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=start_new_session,
            )
        self._procs.append((proc, log))
        return proc

    def run(
        self,
        host: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 60.0,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in ``host`` to its end and return its output (text)."""
        return subprocess.run(
            self._exec(host, argv),
            cwd=cwd if cwd is not None else self.workdir(host),
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def enter(self, host: str) -> AbstractContextManager[None]:
        """Put the calling thread (only it) in ``host``'s namespace for the block. Sockets it
        opens and threads it starts there stay in ``host`` after the block: an httpx client,
        a Dask ``Client`` made in the block (its event loop thread, unless one ran before)."""
        self._index(host)
        return entered(self.namespace(host))

    def wait_port(
        self,
        host_from: str,
        addr: str,
        port: int,
        timeout: float = 30.0,
        *,
        proc: subprocess.Popen[Any] | None = None,
    ) -> None:
        """Wait until ``addr:port`` accepts a TCP connection made from ``host_from``; fail at
        ``timeout``, or, with its log, as soon as ``proc`` (the server) exits."""
        deadline = time.monotonic() + timeout
        with self.enter(host_from):
            while True:
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(
                        f"{proc.args} exited with {proc.returncode} before {addr}:{port} "
                        f"accepted connections\n{self._log_tail(proc)}"
                    )
                with suppress(OSError), socket.create_connection((addr, port), timeout=0.5):
                    return
                if time.monotonic() > deadline:
                    tail = self._log_tail(proc) if proc is not None else ""
                    raise TimeoutError(
                        f"{addr}:{port} refused {host_from} for {timeout:g}s\n{tail}"
                    )
                time.sleep(0.05)

    def close(self) -> None:
        """SIGKILL every process in the run's namespaces, delete them (and so the veths and
        the bridge). Idempotent; raises if something could not be removed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        namespaces = list(reversed(self._namespaces))  # hosts first, the switch last
        kill_all_in(namespaces)
        for proc, _ in self._procs:
            with suppress(subprocess.TimeoutExpired):
                proc.wait(5)  # reap: no zombies left to the caller
        errors = []
        for ns in namespaces:
            try:
                ip("netns", "del", ns)
            except RuntimeError as e:
                errors.append(str(e))
        _LIVE.discard(self)
        if errors:
            raise RuntimeError("network teardown left: " + "; ".join(errors))

    def _address(self, index: int) -> str:
        return self.subnet.rsplit(".", 1)[0] + f".{index}"

    def _index(self, host: str) -> int:
        try:
            return self._hosts[host]
        except KeyError:
            raise KeyError(f"no host {host!r} on this network: {self.hosts}") from None

    def _exec(self, host: str, argv: Sequence[str]) -> list[str]:
        self._index(host)
        return [self._ip, "netns", "exec", self.namespace(host), *argv]

    def _netns_add(self, ns: str) -> None:
        ip("netns", "add", ns)
        self._namespaces.append(ns)

    def _log_tail(self, proc: subprocess.Popen[Any], chars: int = 3000) -> str:
        for started, log in self._procs:
            if started is proc and log.exists():
                return log.read_text(errors="replace")[-chars:]
        return ""


@contextmanager
def network(
    hosts: Sequence[str] = (), *, tmp_dir: Path, octet: int | None = None
) -> Iterator[Network]:
    """A private network with ``hosts`` on it for the block; torn down when it ends, however
    it ends (see :meth:`Network.close`). ``octet`` picks ``10.213.<octet>.0/24``."""
    net = Network(tmp_dir, octet=octet)
    try:
        for host in hosts:
            net.add_host(host)
        yield net
    finally:
        net.close()


_LIVE: set[Network] = set()


@atexit.register
def _close_all() -> None:
    """Safety net for a run whose context never exited (an interpreter shutting down)."""
    for net in list(_LIVE):
        with suppress(Exception):
            net.close()
