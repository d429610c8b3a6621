"""One round of bench.capture in one process: the capture path of the ``ingest`` package first
on ``sys.path`` (a source tree under test), timed for every case it supports.

Run by bench.capture as ``python -c <launcher> TREE WORKER CASES REQUESTS_1 REQUESTS_32
REPEATS``; prints
one JSON object: ``{case: {metric: seconds}}``. It imports nothing from ``bench``: the tree
under test may be older than this file.
"""

from __future__ import annotations

import inspect
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from ingest import Warehouse
from ingest.capture import LandingWriter, ProcessLandingWriter
from ingest.capture._blocks import run_to_batch
from ingest.schema import FeatureSpec, ModelSchema

TS_US = 1_767_261_600_000_000  # 2026-01-01 10:00 UTC
LABELS = ["basic", "gold", "platinum", "trial", "business", "edu", "family", "student"]


def schema_of(case: str) -> ModelSchema:
    """``num33``/``ids33``: 33 numeric features; ``cat30+3``: 30 numeric, 3 categorical
    (one after every tenth numeric one)."""
    if case.startswith("cat"):
        features = []
        for j in range(30):
            features.append(FeatureSpec(f"x{j}"))
            if j % 10 == 9:
                features.append(FeatureSpec(f"c{j // 10}", "categorical"))
        return ModelSchema("bench", tuple(features))
    return ModelSchema("bench", tuple(FeatureSpec(f"x{j}") for j in range(33)))


def calls(case: str, rows: int, requests: int, n_numeric: int) -> list[tuple]:
    """Each request's append_block arguments (the same arrays, distinct ids and strings)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, n_numeric))
    prediction, score = np.zeros(rows), np.ones(rows)
    out = []
    for i in range(requests):
        prefix = uuid.uuid4().hex
        args: tuple = (TS_US + i, prefix, x, prediction, score, "v1")
        if case.startswith("cat"):
            columns = [[LABELS[(i + r * 3 + c) % 8] for r in range(rows)] for c in range(3)]
            args += (columns,)
        elif case.startswith("ids"):
            args += (None, [f"{prefix}-{r}" for r in range(rows)])
        out.append(args)
    return out


def run(case: str, rows: int, requests: int, base: Path, reps: int) -> dict[str, float]:
    """Seconds for ``requests`` appends to each writer (median of ``reps``, a fresh writer
    each), then for the flusher's part and the flushes of the last ones' rows."""
    schema = schema_of(case)
    n_numeric = sum(f.kind == "numeric" for f in schema.features)
    n_categorical = len(schema.features) - n_numeric
    args = calls(case, rows, requests, n_numeric)
    result = {}

    def appended(writer: LandingWriter | ProcessLandingWriter) -> float:
        append = writer.append_block
        t = time.perf_counter()
        for a in args:
            if not append(*a):
                raise RuntimeError("the writer dropped rows: size it larger")
        return time.perf_counter() - t

    times = []
    for rep in range(reps):
        writer = LandingWriter(Warehouse(base / f"thread{rep}"), schema, "r1", flush_rows=10**9)
        times.append(appended(writer))
    result["thread_append"] = statistics.median(times)
    t = time.perf_counter()
    writer.flush()
    result["thread_flush"] = time.perf_counter() - t

    times, spool = [], None
    for rep in range(reps):
        if spool is not None:
            spool._ring.close()
        spool = ProcessLandingWriter(
            Warehouse(base / f"spool{rep}"), schema, "r1", spool_rows=requests * rows + 1000
        )
        times.append(appended(spool))
    result["process_append"] = statistics.median(times)
    t = time.perf_counter()
    ring = spool._ring
    taken = ring.take(n_numeric, n_categorical) if n_categorical else ring.take(n_numeric)
    flusher = LandingWriter(Warehouse(base / "process"), schema, "r1", flush_rows=10**9)
    batches = [run_to_batch(r, flusher.arrow_schema, "r1") for r in taken]
    result["process_take"] = time.perf_counter() - t
    flusher.extend_checked(batches)
    t = time.perf_counter()
    flusher.flush()
    result["process_flush"] = time.perf_counter() - t
    if sum(b.num_rows for b in batches) != rows * requests:
        raise RuntimeError("the flusher's part lost rows")
    ring.close()
    return result


def main(argv: list[str]) -> None:
    cases, per_request = argv[0].split(","), {1: int(argv[1]), 32: int(argv[2])}
    reps = int(argv[3])
    strings = "categorical" in inspect.signature(LandingWriter.append_block).parameters
    out = {}
    with tempfile.TemporaryDirectory(prefix="bench-capture-") as tmp:
        cases = [c for c in cases if c == "num33" or strings]  # older trees: numbers only
        for case in cases:  # first Parquet writes, imports, code paths: not timed
            for rows in per_request:
                run(case, rows, 50, Path(tmp) / f"warm-{case}-{rows}", 1)
        for case in cases:
            for rows, requests in per_request.items():
                key = f"{case}/{rows}"
                out[key] = run(case, rows, requests, Path(tmp) / key.replace("/", "-"), reps)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
