"""Publish what started monitors hold when their process ends: at interpreter exit, and on a
SIGTERM that would otherwise kill the process without running any Python."""

from __future__ import annotations

import atexit
import logging
import signal
import threading
from collections.abc import Callable

log = logging.getLogger("driftlake.ingest.capture.monitor")

_lock = threading.Lock()
_closers: dict[int, Callable[[], None]] = {}  # id(monitor) -> its close


_exiting = threading.Event()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # unwinds the main thread like sys.exit: finally blocks and with-statements run, then
    # atexit, which closes every monitor still open. Once: a second SIGTERM must not
    # interrupt the close the first one started
    if not _exiting.is_set():
        _exiting.set()
        raise SystemExit(128 + signum)


def _close_all() -> None:
    with _lock:
        closers = list(_closers.values())
    for close in closers:
        try:
            close()
        except Exception:  # one monitor's failure must not keep the others' rows unpublished
            log.exception("event=monitor_close_failed at=exit")


atexit.register(_close_all)


def register(key: int, close: Callable[[], None], handle_sigterm: bool) -> None:
    """Have ``close`` run at exit; with ``handle_sigterm``, let SIGTERM exit through Python.

    The handler goes in only from the main thread (the only one that may set one) and only
    over SIGTERM's default action: a server that handles SIGTERM itself (uvicorn) stops
    through its own shutdown, which closes the monitor.
    """
    with _lock:
        _closers[key] = close
        if (
            handle_sigterm
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        ):
            signal.signal(signal.SIGTERM, _exit_on_sigterm)


def unregister(key: int) -> None:
    """Forget a closed monitor; the last one out restores SIGTERM's default action."""
    with _lock:
        _closers.pop(key, None)
        if (
            not _closers
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is _exit_on_sigterm
        ):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
