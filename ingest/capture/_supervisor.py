"""The flusher child process of a ProcessLandingWriter: spawn, wait for, wake and stop it."""

from __future__ import annotations

import logging
import os
import pickle
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ingest.capture import _flusher as flusher
from ingest.capture import _spool_layout as slot
from ingest.capture._spool import Spool
from ingest.errors import LandingError

log = logging.getLogger("driftlake.ingest.capture.process_writer")  # the writer's events

# where ``ingest.capture._flusher`` imports even if driftlake is not installed
_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


def may_raise_flusher() -> bool:
    """True if this process may move its flusher from SCHED_IDLE back to nice
    :data:`ingest.capture._flusher.NICE` (CAP_SYS_NICE, or an RLIMIT_NICE that allows that nice
    value, e.g. docker-compose's ``ulimits: nice``); only then may the flusher idle."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    if soft == resource.RLIM_INFINITY or soft >= 20 - flusher.NICE:
        return True
    with open("/proc/self/status") as fh:
        caps = next((line.split()[1] for line in fh if line.startswith("CapEff:")), "0")
    return bool(int(caps, 16) >> 23 & 1)  # CAP_SYS_NICE


class FlusherProcess:
    """One flusher child over ``ring``, started with the LandingWriter settings ``config``.

    Between looks at the ring the flusher sleeps on an eventfd (up to its MAX_PAUSE), which
    :meth:`wake` writes: the server when the ring is a quarter full, and flush() and close(),
    which wait for it.
    """

    def __init__(self, ring: Spool, config: dict[str, Any], replica: str) -> None:
        self.ring = ring
        self.config = config
        self.replica = replica
        self.proc: subprocess.Popen[bytes] | None = None
        self.may_idle = may_raise_flusher()
        self.wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def spawn(self) -> None:
        """Start a flusher; it reads its settings from stdin and maps the ring."""
        self.ring.set(slot.READY, 0)
        config = {
            **self.config,
            "parent": os.getpid(),
            "may_idle": self.may_idle,
            "wake_fd": self.wake_fd,
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                # not ``-m``: runpy would import the module a second time as __main__ after
                # the package's __init__ imported it (and warn about that on every start)
                "-c",
                "from ingest.capture._flusher import main; main()",
                str(self.ring.fd),
                str(self.ring.capacity),
            ],
            stdin=subprocess.PIPE,
            pass_fds=(self.ring.fd, self.wake_fd),
            cwd=_PROJECT_ROOT,
        )
        try:
            self.proc.stdin.write(pickle.dumps(config))
            self.proc.stdin.close()
        except BrokenPipeError:
            # it exited before reading its config: start() or the next flush reports how
            pass

    def start(self, timeout: float) -> None:
        """Spawn a flusher and return once it takes rows out of the ring.

        Raises LandingError if it exits or is not ready within ``timeout``; then no
        flusher runs, so that start() can be tried again.
        """
        self.spawn()
        try:
            self.wait_for(
                lambda: self.ring.get(slot.READY) == self.proc.pid, "be ready", timeout, 0.01
            )
        except LandingError:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            raise

    def wait_for(self, done: Callable[[], bool], goal: str, timeout: float, pause: float) -> None:
        """Poll ``done`` until it holds; LandingError if the flusher exits or time runs out."""
        proc = self.proc
        deadline = time.monotonic() + timeout
        while not done():
            if proc.poll() is not None:
                raise LandingError(
                    f"the flusher of replica {self.replica} exited with {proc.returncode} "
                    f"before it could {goal} (its error is in this process's log)"
                )
            if time.monotonic() > deadline:
                raise LandingError(
                    f"the flusher of replica {self.replica} did not {goal} within {timeout:g} s"
                )
            time.sleep(pause)

    def exited(self) -> bool:
        """True if a flusher was started and has exited."""
        return self.proc is not None and self.proc.poll() is not None

    def wake(self) -> None:
        """Wake the flusher, and put one at SCHED_IDLE back at its nice value (a busy core
        may starve it)."""
        if self.wake_fd >= 0:
            os.eventfd_write(self.wake_fd, 1)
        if not self.may_idle or self.proc is None or self.proc.poll() is not None:
            return
        try:
            flusher.set_policy(self.proc.pid, os.SCHED_OTHER)
        except FileNotFoundError:  # it just exited: the writer's next check restarts it
            pass
        except PermissionError as exc:  # the limits changed: the next flusher stays at nice
            self.may_idle = False
            log.warning("event=flusher_priority replica=%s reason=%s", self.replica, exc)

    def stop(self, timeout: float) -> None:
        """Have the flusher publish every row (retrying for up to ``timeout``) and exit;
        one is started first if none ever was."""
        if self.proc is None:
            self.spawn()
        proc = self.proc
        self.ring.set(slot.STOP, max(1, int(timeout * 1e3)))
        self.wake()
        try:
            proc.wait(timeout + 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            log.error("event=flusher_killed replica=%s reason=did not stop", self.replica)

    def close_wake(self) -> None:
        """Close the eventfd; the caller holds the lock of every :meth:`wake` caller."""
        os.close(self.wake_fd)
        self.wake_fd = -1
