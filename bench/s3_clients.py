"""Benchmark: S3 client libraries side by side (obstore, pyarrow.fs.S3FileSystem, s3fs) against
moto's standalone server on loopback, plus which Parquet readers read the bucket and how.

Run with ``uv run --frozen python -m bench.s3_clients [--repeats N]``. The script starts moto
on a free loopback port and makes a fresh bucket; every library then runs the same operations
in the same run, libraries interleaved within each repeat (their order rotating), and the
tables show medians of the repeats: wall time, the client process's CPU time, and the requests
moto logged for one call. The server is moto (Python, one new connection per request), so the
wall times rank client overheads; they do not predict latency to AWS.

Operations: PUT of 20 KB and 2 MB; GET of both whole; the last 64 KB of the 2 MB object (a
Parquet footer read, size unknown); LIST of a prefix holding 2,000 keys; LIST with delimiter
``/`` (20 common prefixes); LIST after a key (start-after, 1,000 keys) where the library has
it. Conditional writes (create-only, If-Match) are checked against moto, not assumed.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
import obstore as obs
import pyarrow as pa
import pyarrow.parquet as pq

from bench._s3_adapters import CLIENTS, Client, ObstoreClient, S3fsClient
from bench._s3_readers import env_probes, env_table, readers
from harness.procs import Process, free_port, start_ready

SMALL, BIG, FOOTER = 20 * 1024, 2 * 1024 * 1024, 64 * 1024
DIRS, KEYS_PER_DIR = 20, 100  # list/dNN/kNNN: 2,000 keys under "list", 20 common prefixes
AFTER = "list/d09/k099"  # start-after this key leaves 1,000 keys
PARQUET_KEY, PARQUET_ROWS = "parquet/landing.parquet", 20_000
_REQUEST = re.compile(r'"([A-Z]+) (\S+) HTTP/1\.[01]" (\d{3})')
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # werkzeug colours some status lines


@dataclass
class Moto:
    """moto's server process and its request log."""

    process: Process

    @property
    def endpoint(self) -> str:
        return self.process.url

    def mark(self) -> int:
        return self.process.log_path.stat().st_size

    def requests_since(self, mark: int) -> str:
        """The requests logged after ``mark``, e.g. ``HEAD, GET`` or ``LIST x2 (start-after)``."""
        with open(self.process.log_path, "rb") as log:
            log.seek(mark)
            lines = _ANSI.sub("", log.read().decode(errors="replace"))
        names = []
        for method, target, _status in _REQUEST.findall(lines):
            if method == "GET" and "list-type=2" in target:
                method = "LIST (start-after)" if "start-after=" in target else "LIST"
            names.append(method)
        groups = {n: names.count(n) for n in dict.fromkeys(names)}
        return ", ".join(n if c == 1 else f"{n} x{c}" for n, c in groups.items()) or "none"


@contextmanager
def moto_server(workdir: Path) -> Iterator[Moto]:
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = start_ready("moto", argv, workdir / "moto.log", port, ready_path="/moto-api/")
    try:
        yield Moto(process)
    finally:
        process.stop(10)


@dataclass
class Stat:
    """Repeated measurements of one (library, operation) and the requests of one call."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    requests: str = ""

    def cell(self) -> str:
        return f"{statistics.median(self.wall) * 1e3:.1f}" if self.wall else "n/a"

    def cpu_cell(self) -> str:
        return f"{statistics.median(self.cpu) * 1e3:.1f}" if self.cpu else "n/a"


def operations() -> dict[str, Callable[[Client, str], object]]:
    """Operation -> call; a call returns what is checked against EXPECTED (None: no API)."""
    small, big = np.random.bytes(SMALL), np.random.bytes(BIG)
    return {
        "PUT 20 KB": lambda c, run: c.put(f"{c.name}/put/small-{run}", small),
        "PUT 2 MB": lambda c, run: c.put(f"{c.name}/put/big-{run}", big),
        "GET 20 KB": lambda c, run: c.get("data/small"),
        "GET 2 MB": lambda c, run: c.get("data/big"),
        "GET last 64 KB": lambda c, run: c.get_suffix("data/big", FOOTER),
        "LIST 2,000 keys": lambda c, run: c.list("list"),
        "LIST delimiter": lambda c, run: c.list_delimited("list"),
        "LIST start-after": lambda c, run: c.list_after("list", AFTER),
    }


EXPECTED = {
    "GET 20 KB": SMALL,
    "GET 2 MB": BIG,
    "GET last 64 KB": FOOTER,
    "LIST 2,000 keys": DIRS * KEYS_PER_DIR,
    "LIST delimiter": DIRS,
    "LIST start-after": (DIRS // 2) * KEYS_PER_DIR,
}


def seed(moto: Moto, bucket: str) -> None:
    """The bucket, the objects every GET reads, the listing tree, one Parquet file."""
    S3fsClient(moto.endpoint, bucket).fs.call_s3("create_bucket", Bucket=bucket)  # us-east-1
    store = ObstoreClient(moto.endpoint, bucket).store
    obs.put(store, "data/small", np.random.bytes(SMALL))
    obs.put(store, "data/big", np.random.bytes(BIG))
    keys = [f"list/d{d:02}/k{k:03}" for d in range(DIRS) for k in range(KEYS_PER_DIR)]

    async def put_all() -> None:
        gate = asyncio.Semaphore(8)

        async def put(key: str) -> None:
            async with gate:
                await obs.put_async(store, key, b"x")

        await asyncio.gather(*(put(k) for k in keys))

    asyncio.run(put_all())
    rng = np.random.default_rng(0)
    table = pa.table({f"x{i}": rng.normal(size=PARQUET_ROWS) for i in range(30)})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    obs.put(store, PARQUET_KEY, sink.getvalue().to_pybytes())


def measure(fn: Callable[[], object], stat: Stat) -> object:
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    stat.wall.append(time.perf_counter() - wall)
    stat.cpu.append(time.process_time() - cpu)  # client threads too: moto is another process
    return value


def bench_operations(moto: Moto, clients: list[Client], repeats: int) -> dict:
    ops = operations()
    stats = {(c.name, op): Stat() for c in clients for op in ops}
    for c in clients:  # warm-up: connections, credentials; the requests of one call
        for op, call in ops.items():
            mark = moto.mark()
            if call(c, "warm") is None and op in EXPECTED:
                stats[c.name, op].requests = "no API"
                continue
            time.sleep(0.05)  # moto logs a request as it answers; let the line land
            stats[c.name, op].requests = moto.requests_since(mark)
    for run in range(repeats):
        order = clients[run % len(clients) :] + clients[: run % len(clients)]
        for op, call in ops.items():
            for c in order:
                if stats[c.name, op].requests == "no API":
                    continue
                got = measure(lambda c=c, call=call, run=run: call(c, str(run)), stats[c.name, op])
                if op in EXPECTED and got != EXPECTED[op]:
                    raise AssertionError(f"{c.name} {op}: got {got}, expected {EXPECTED[op]}")
    return stats


def check_conditional(client: Client, witness: ObstoreClient) -> tuple[str, str]:
    """("yes"/"no" per check, how): create-only on an existing key conflicts and on a new one
    writes; If-Match with the current etag replaces and with a stale one conflicts. Etags and
    contents are read back through ``witness``, the same way for every library."""
    key, fresh = f"{client.name}/cond/{uuid.uuid4().hex}", f"{client.name}/cond/new"

    def read() -> bytes:
        return obs.get(witness.store, key).bytes().to_bytes()

    def attempt(write: Callable[[], None]) -> str:
        try:
            write()
        except client.conflicts as e:
            if type(e) is OSError and e.errno:  # s3fs: only the errno tells 412 apart
                return f"OSError({errno.errorcode[e.errno]})"
            return type(e).__name__
        return "wrote"

    client.put(key, b"v1")
    old = obs.head(witness.store, key)["e_tag"]
    created_over = attempt(lambda: client.put_create(key, b"v2"))
    created_new = attempt(lambda: client.put_create(fresh, b"n"))
    create_ok = created_over != "wrote" and read() == b"v1" and created_new == "wrote"
    matched = attempt(lambda: client.put_if_match(key, b"v3", old))
    replaced = read() == b"v3"
    stale = attempt(lambda: client.put_if_match(key, b"v4", old))
    match_ok = matched == "wrote" and replaced and stale != "wrote" and read() == b"v3"
    verdict = f"create-only {'yes' if create_ok else 'no'}, If-Match {'yes' if match_ok else 'no'}"
    how = (
        f"`{client.conditional.create}` on an existing key: {created_over}; "
        f"`{client.conditional.match}` current etag: {matched}, stale etag: {stale}"
    )
    return verdict, how


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per cell")
    args = parser.parse_args()
    libs = ("obstore", "pyarrow", "s3fs", "polars", "duckdb", "moto")
    print(", ".join(f"{n} {version(n)}" for n in libs) + f"; median of {args.repeats} repeats")
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp, moto_server(Path(tmp)) as moto:
        bucket = "bench-" + uuid.uuid4().hex[:12]
        seed(moto, bucket)
        clients = [cls(moto.endpoint, bucket) for cls in CLIENTS]
        stats = bench_operations(moto, clients, args.repeats)
        witness = ObstoreClient(moto.endpoint, bucket)
        conditional = {c.name: check_conditional(c, witness) for c in clients}
        print_tables(clients, stats, conditional)
        print_readers(moto, bucket, args.repeats)


def print_tables(clients: list[Client], stats: dict, conditional: dict) -> None:
    ops = list(operations())
    print("\n### Wall time, ms (median)\n")
    print("| library | " + " | ".join(ops) + " | conditional writes |")
    print("|---|" + "---:|" * len(ops) + "---|")
    for c in clients:
        cells = [stats[c.name, op].cell() for op in ops]
        print(f"| {c.name} | " + " | ".join(cells) + f" | {conditional[c.name][0]} |")
    print("\n### Client CPU time, ms (median), and the requests of one call (moto's log)\n")
    print("| library | " + " | ".join(ops) + " |")
    print("|---|" + "---|" * len(ops))
    for c in clients:
        cells = [f"{stats[c.name, op].cpu_cell()} ({stats[c.name, op].requests})" for op in ops]
        print(f"| {c.name} | " + " | ".join(cells) + " |")
    print("\n### How each lists after a key\n")
    for c in clients:
        print(f"- {c.name}: {c.list_after_api or 'no API'}")
    print("\n### Conditional writes, as moto answered\n")
    for c in clients:
        print(f"- {c.name}: {conditional[c.name][1]}")


def print_readers(moto: Moto, bucket: str, repeats: int) -> None:
    print(f"\n### Parquet readers, {PARQUET_ROWS:,} rows x 30 columns read whole\n")
    print("| reader | reads it | ms (median) | requests of one read |")
    print("|---|---|---:|---|")
    for name, read in readers(moto.endpoint, bucket, PARQUET_KEY).items():
        mark, stat = moto.mark(), Stat()
        try:
            rows = read().num_rows
        except Exception as e:
            print(f"| {name} | no: {_why(e)} | | |")
            continue
        time.sleep(0.05)
        requests = moto.requests_since(mark)
        for _ in range(repeats):
            measure(read, stat)
        print(f"| {name} | yes ({rows:,} rows) | {stat.cell()} | {requests} |")
    print("\n### Endpoint from the environment alone (child processes)\n")
    print("\n".join(env_table(env_probes(moto.endpoint, bucket, PARQUET_KEY))))


def _why(error: Exception) -> str:
    text = " ".join(str(error).split())
    if "httpfs" in text and "not found" in text:
        return "the httpfs extension is not installed (INSTALL httpfs downloads it)"
    return f"{type(error).__name__}: {text[:120]}"


if __name__ == "__main__":
    main()
