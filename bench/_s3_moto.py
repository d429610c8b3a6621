"""bench.s3's view of moto: the server's CPU time and the S3 requests it logged, by kind."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import obstore as obs
from obstore.store import S3Store

from bench import procs
from harness.s3 import MotoServer

_REQUEST = re.compile(r'"([A-Z]+) (\S+) HTTP/1\.[01]" (\d{3})')
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # werkzeug colours some status lines


@dataclass
class MotoMeter:
    """A running moto server, read for its CPU time and its request log."""

    server: MotoServer

    def cpu_seconds(self) -> float:
        """User + system CPU time moto has used so far."""
        s = self.server
        return procs.Proc(s.name, s.port, s.proc, s.log_path).cpu_seconds()

    def mark(self) -> int:
        """A position in moto's log; :meth:`requests_since` counts what follows it."""
        return self.server.log_path.stat().st_size

    def requests_since(self, mark: int, settle: float = 0.05) -> Counter[str]:
        """The S3 requests moto answered after ``mark``, by kind (GET, HEAD, PUT, LIST,
        DELETE...); ``settle`` seconds first, as moto logs a request once it has answered."""
        time.sleep(settle)
        with open(self.server.log_path, "rb") as log:
            log.seek(mark)
            text = _ANSI.sub("", log.read().decode(errors="replace"))
        kinds: Counter[str] = Counter()
        for method, target, _status in _REQUEST.findall(text):
            if target.startswith("/moto-api"):
                continue
            if method == "GET" and "list-type=2" in target:
                method = "LIST"
            elif method == "POST" and "delete" in target:
                method = "DELETE"
            kinds[method] += 1
        return kinds


def show_requests(kinds: Counter[str], per: float = 1.0) -> str:
    """``kinds`` as ``"12 (GET 10, LIST 2)"``, each count divided by ``per``."""
    if not kinds:
        return "0"
    parts = ", ".join(f"{k} {_num(v / per)}" for k, v in kinds.most_common())
    return f"{_num(sum(kinds.values()) / per)} ({parts})"


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 10 or x == int(x) else f"{x:.2g}"


def put_many(store: S3Store, items: Iterable[tuple[str, bytes]], threads: int = 32) -> float:
    """PUT every ``(path, body)`` into ``store`` from ``threads`` threads; return seconds."""
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(lambda item: obs.put(store, item[0], item[1]), items):
            pass
    return time.perf_counter() - started
