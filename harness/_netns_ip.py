"""``ip`` (Debian's iproute2) and ``setns(2)`` for harness/netns.py: the commands it runs, the
privilege probe, entering a namespace from a thread, and killing what runs in one."""

from __future__ import annotations

import ctypes
import functools
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

NETNS_DIR = Path("/run/netns")  # where `ip netns add` bind-mounts a named namespace
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsUnavailable(RuntimeError):
    """This process may not make network namespaces (not root, no ``ip``, no privilege)."""


def ip_binary() -> str:
    """The path of ``ip``, or :class:`NetnsUnavailable`."""
    path = shutil.which("ip", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if path is None:
        raise NetnsUnavailable("ip is not installed: apt-get install iproute2")
    return path


def ip(*args: str) -> None:
    """Run ``ip <args>``; a failure raises with its message (NetnsUnavailable for EPERM)."""
    done = subprocess.run([ip_binary(), *args], capture_output=True, text=True, timeout=30)
    if done.returncode:
        error = NetnsUnavailable if "not permitted" in done.stderr else RuntimeError
        raise error(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")


@functools.cache
def netns_unavailable() -> str | None:
    """Why this process cannot make and enter network namespaces, or None if it can (probed
    once: a namespace is added, a command run in it, and the namespace deleted)."""
    if os.geteuid() != 0:
        return "network namespaces need root (run the tests as root, as .ci/run does)"
    probe = f"dl{secrets.token_hex(3)}probe"
    try:
        ip("netns", "add", probe)
    except RuntimeError as e:  # NetnsUnavailable too
        return str(e)
    try:
        ip("netns", "exec", probe, "true")
    except RuntimeError as e:
        return str(e)
    finally:
        with suppress(RuntimeError):
            ip("netns", "del", probe)
    return None


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def entered(ns: str) -> Iterator[None]:
    """The calling thread in network namespace ``ns`` for the block, back home after it."""
    target = os.open(NETNS_DIR / ns, os.O_RDONLY)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def pids_in(ns: str) -> list[int]:
    """The processes in namespace ``ns``, never this one (its thread may be inside)."""
    done = subprocess.run([ip_binary(), "netns", "pids", ns], capture_output=True, text=True)
    return [int(p) for p in done.stdout.split() if int(p) != os.getpid()]


def kill_all_in(namespaces: list[str], timeout: float = 10.0) -> None:
    """SIGKILL every process in ``namespaces`` (children that forked meanwhile too) until
    none is left or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    for ns in namespaces:
        while (pids := pids_in(ns)) and time.monotonic() < deadline:
            for pid in pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
