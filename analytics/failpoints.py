"""Crash points for recovery tests: ``DRIFTLAKE_FAILPOINT=<name>[:<n>]`` SIGKILLs the process.

The driver calls :func:`failpoint` at the instants where a crash is most dangerous (results
half-written, checkpoint not yet saved). Unset, it costs one dict lookup per cycle.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_hits: Counter[str] = Counter()


def failpoint(name: str) -> None:
    """Kill this process with SIGKILL on the n-th time ``name`` is reached (default: first)."""
    spec = os.environ.get("DRIFTLAKE_FAILPOINT")
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    _hits[name] += 1
    if _hits[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
