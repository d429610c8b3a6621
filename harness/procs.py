"""Child processes on loopback: free ports, readiness polls with a deadline, start and stop.

Example
-------
>>> port = free_port()
>>> argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
>>> web = start_ready("web", argv, tmp_path / "web.log", port, ready_path="/")
>>> httpx.get(web.url).status_code
200
>>> web.stop()
-15
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import ROOT

REQUIRE_INTEGRATION = os.environ.get("DRIFTLAKE_REQUIRE_INTEGRATION") == "1"
_SBIN = ":/usr/sbin:/sbin"  # Debian installs nginx there, off a user's PATH


def require_binary(name: str) -> str:
    """Return the path of the executable ``name``, or skip the test that needs it.

    Under ``DRIFTLAKE_REQUIRE_INTEGRATION=1`` (CI) a missing binary fails instead.
    """
    path = shutil.which(name, path=os.environ.get("PATH", "") + _SBIN)
    if path:
        return path
    reason = (
        f"{name} is not installed: install Debian's package "
        "(apt-get install nginx prometheus prometheus-pushgateway prometheus-alertmanager "
        "docker-compose chromium; .ci/run does)"
    )
    if REQUIRE_INTEGRATION:
        pytest.fail(reason + " -- DRIFTLAKE_REQUIRE_INTEGRATION=1 makes this a failure")
    pytest.skip(reason)


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_on(hosts: Sequence[str]) -> int:
    """Return a TCP port that is free on every one of ``hosts`` (loopback addresses)."""
    for _ in range(50):
        port = free_port()
        try:
            for host in hosts:
                with socket.socket() as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no TCP port free on all of {list(hosts)} after 50 tries")


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy (returned), or fail at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {condition}")
        time.sleep(interval)


def driftlake_env(**settings: Any) -> dict[str, str]:
    """This environment without inherited ``DRIFTLAKE_*`` variables, plus ``settings`` as
    ``DRIFTLAKE_<NAME>`` (so every child starts from the defaults and what a caller says)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLAKE_")}
    env.update({f"DRIFTLAKE_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@dataclass
class Process:
    """A child process listening on a loopback port, and the file its output goes to."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    # started in its own session: stop() signals its whole group (nginx and Dask workers too)
    own_session: bool = field(default=False, kw_only=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        """Return what the process has written so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 3000) -> str:
        return self.logs()[-chars:]

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (a graceful stop), SIGKILL after ``timeout`` seconds; return the exit code."""
        return stop_process(self.proc, timeout, group=self.own_session)


def start_process(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    port: int,
    *,
    cwd: Path = ROOT,
    env: Mapping[str, str] | None = None,
    own_session: bool = False,
    preexec_fn: Callable[[], None] | None = None,
) -> Process:
    """Start ``argv`` with stdout and stderr in ``log_path``; it is expected on ``port``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=None if env is None else dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=own_session,
            preexec_fn=preexec_fn,
        )
    return Process(name, port, proc, log_path, own_session=own_session)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 30.0, *, group: bool = False) -> int:
    """Stop ``proc``: SIGTERM, then SIGKILL after ``timeout`` s; return its exit code.

    With ``group`` (a child started in its own session) the signals go to its process group,
    and whatever of the group outlives its leader is killed.
    """

    def send(sig: signal.Signals) -> None:
        with suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)

    if proc.poll() is None:
        send(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            proc.wait(10)
    if group:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode


def wait_for_http(process: Process, path: str = "/healthz", timeout: float = 60.0) -> None:
    """Poll ``GET <process.url><path>`` until it answers 200; fail, with the process's log,
    if it exits first or ``timeout`` seconds pass."""
    url = process.url + path
    deadline = time.monotonic() + timeout
    while True:
        if process.proc.poll() is not None:
            raise RuntimeError(
                f"{process.name} exited with {process.proc.returncode} before {url} answered; "
                f"argv={process.proc.args}\n{process.log_tail(4000)}"
            )
        try:
            if httpx.get(url, timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{process.name} did not answer 200 on {url} within {timeout:g}s\n"
                f"{process.log_tail(4000)}"
            )
        time.sleep(0.05)


def start_ready(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    port: int,
    *,
    ready_path: str = "/healthz",
    timeout: float = 60.0,
    **popen: Any,
) -> Process:
    """:func:`start_process`, then :func:`wait_for_http`; a process that is not ready is
    stopped before the error is raised."""
    process = start_process(name, argv, log_path, port, **popen)
    try:
        wait_for_http(process, ready_path, timeout)
    except BaseException:
        process.stop(10)
        raise
    return process


@contextmanager
def binary_running(
    name: str, argv: Sequence[str], workdir: Path, port: int, ready_path: str
) -> Iterator[Process]:
    """Run one of the stack's binaries (nginx, Prometheus...) in ``workdir`` and in its own
    session, its log in ``<workdir>/<name>.log``, until the block ends; ready when
    ``ready_path`` answers 200 (within 20 s); stopped with its whole group (5 s to TERM)."""
    workdir.mkdir(parents=True, exist_ok=True)
    process = start_ready(
        name,
        argv,
        workdir / f"{name}.log",
        port,
        ready_path=ready_path,
        timeout=20.0,
        cwd=workdir,
        own_session=True,
    )
    try:
        yield process
    finally:
        process.stop(5.0)


def run_python(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python <args>`` in the repository to its end, in its own session, and return its
    output; whatever it started (a local Dask cluster's workers) is killed with its group."""
    cmd = [sys.executable, *args]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=driftlake_env() if env is None else dict(env),
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
