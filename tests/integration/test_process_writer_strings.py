"""The flusher process lands categorical columns and row ids exactly, through a ring that
wraps and fills, on close and when its server is terminated; numbers-only records keep
their format."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pytest

from harness.procs import wait_until
from ingest import SchemaError, Warehouse
from ingest.capture import ProcessLandingWriter, process_writer_supported
from ingest.capture import _spool_layout as slot
from ingest.capture._blocks import run_to_batch
from ingest.capture._spool_layout import REC, align
from ingest.reader import list_landing
from tests.unit.test_capture_strings import (
    SCHEMA,
    START_US,
    append,
    assert_lands_exactly,
    bad_blocks,
    expected,
    landed,
    mixed_requests,
    valid_block,
)
from tests.unit.test_writer_blocks import SCHEMA as NUMERIC

pytestmark = [
    pytest.mark.integration,  # each writer here starts its flusher, a child process
    pytest.mark.timeout(120),
    pytest.mark.skipif(not process_writer_supported(), reason="needs x86-64 Linux (memfd)"),
]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def process_writer(wh: Warehouse, schema=SCHEMA, **kw) -> ProcessLandingWriter:
    kw = {"flush_rows": 10**6, "flush_interval": 3600, **kw}
    return ProcessLandingWriter(wh, schema, "r1", **kw)


def test_mixed_blocks_land_exact_values_through_a_ring_that_wraps(tmp_path):
    # 70 kB of room (the largest record, 8 rows of 1 kB values, is 17 kB): 3,000 requests
    # (~3 MB) go round it many times, their records of varying sizes meeting pads at its
    # end; record kinds (with and without row ids, scores) alternate, so takes split runs
    reqs = mixed_requests(seed=7, n=3000)
    wh = Warehouse(tmp_path / "wh")
    writer = process_writer(wh, spool_rows=400, flush_rows=2000, flush_interval=0.05).start()
    assert writer._ring.capacity < 100_000
    for r in reqs:
        deadline = time.monotonic() + 10
        while not append(writer, r):  # full: the flusher empties it within a few ms
            assert time.monotonic() < deadline, "the flusher stopped taking records"
    writer.close()
    assert writer._ring.written() > 20 * writer._ring.capacity
    assert_lands_exactly(wh, reqs)
    s = writer.stats()
    assert s.flushed_rows == sum(len(r[3]) for r in reqs) == s.captured_rows - s.dropped_rows


def test_one_take_of_every_record_kind_lands_each_row_once(tmp_path):
    # not started: every record waits in the ring and close() takes them at once, runs of
    # BLOCK (numbers only), TEXT_IDS and mixed scores side by side
    reqs = []
    rng = np.random.default_rng(5)
    for k in range(200):
        rows = int(rng.integers(1, 5))
        ids = [f"{k}-{j}-given" for j in range(rows)] if k % 4 in (1, 2) else None
        score = rng.random(rows) if k % 3 else None
        x = rng.normal(size=(rows, 3))
        reqs.append((START_US + k, f"p{k}", x, np.ones(rows), score, "v1", None, ids))
    wh = Warehouse(tmp_path / "wh")
    writer = process_writer(wh, schema=NUMERIC)
    for r in reqs:
        assert append(writer, r)
    writer.close()
    assert_lands_exactly(wh, reqs, NUMERIC)


def test_numbers_only_records_keep_their_format_and_strings_make_text_records(tmp_path):
    writer = process_writer(Warehouse(tmp_path / "wh"), schema=NUMERIC)
    ring = writer._ring
    x, one = np.ones((2, 3)), np.ones(2)
    assert writer.append_block(START_US, "abc", x, one, None, "v1")
    size, kind = REC.unpack_from(ring._data, 0)[:2]
    # the record of a numbers-only request: header, id, version, 8-aligned, then numbers
    assert (kind, size) == (slot.BLOCK, align(REC.size + 3 + 2) + 8 * (6 + 2))
    assert writer.append_block(START_US, "abc", x, one, None, "v1", None, ["i", "jj"])
    size2, kind2 = REC.unpack_from(ring._data, size)[:2]
    assert (kind2, size2) == (slot.TEXT_IDS, align(align(REC.size + 2) + 8 * 8 + 4 * 2 + 3))
    (block, text) = ring.take(3)
    assert block.row_ids is None and text.row_ids.to_pylist() == ["i", "jj"]
    writer.close()


def test_bad_strings_are_refused_and_nothing_reaches_the_ring(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    writer = process_writer(wh)  # not started: whatever an append wrote would stay
    for case, change, message in bad_blocks():
        with pytest.raises(SchemaError, match="does not match its landing schema") as info:
            writer.append_block(**valid_block(**change))
        assert message in str(info.value), case
        assert writer._ring.used() == 0 and writer.stats().captured_rows == 0, case
    assert writer.append_block(**valid_block())
    writer.close()
    assert landed(wh)["request_id"].to_pylist() == ["ok-0", "ok-1"]


def test_a_full_ring_drops_and_counts_categorical_blocks_and_close_lands_the_rest(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    writer = process_writer(wh, spool_rows=20)  # not started: nobody empties the ring
    reqs = [r for r in mixed_requests(seed=9, n=40) if len(r[3])]
    results = [append(writer, r) for r in reqs]
    assert results[0] and not results[-1]
    kept = [r for r, ok in zip(reqs, results, strict=True) if ok]
    rows = [len(r[3]) for r in reqs]
    s = writer.stats()
    assert s.captured_rows == sum(rows)
    assert s.dropped_rows == sum(n for n, ok in zip(rows, results, strict=True) if not ok) > 0
    writer.close()  # starts a flusher to publish what the ring holds
    assert_lands_exactly(wh, kept)
    assert writer.stats().flushed_rows == sum(len(r[3]) for r in kept)


CHILD = """
import sys
from ingest import Warehouse
from tests.integration.test_process_writer_strings import process_writer
from tests.unit.test_capture_strings import append, mixed_requests

writer = process_writer(Warehouse(sys.argv[1])).start()
for r in mixed_requests(seed=11, n=300):
    assert append(writer, r)
print(writer._flusher.proc.pid, flush=True)
sys.stdin.read()  # until terminated
"""


def test_a_terminated_server_s_flusher_lands_every_row_it_was_handed(tmp_path):
    # the server process dies by SIGTERM (Python's default: no cleanup, no close()); its
    # flusher notices it is orphaned and publishes everything the ring holds
    wh = Warehouse(tmp_path / "wh")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "wh")],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        flusher = int(child.stdout.readline())
        assert not os.path.exists(tmp_path / "wh" / "landing")  # nothing due yet
        child.send_signal(signal.SIGTERM)
        assert child.wait(30) == -signal.SIGTERM
    finally:
        child.kill()
        child.wait(30)
    reqs = mixed_requests(seed=11, n=300)
    rows = sum(len(r[3]) for r in reqs)

    def all_landed() -> bool:
        return bool(list_landing(wh, "mixed")) and landed(wh).num_rows == rows

    wait_until(all_landed, timeout=60)
    assert_lands_exactly(wh, reqs)
    wait_until(lambda: not _running(flusher), timeout=30)  # and then it exits


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_run_to_batch_of_text_runs_matches_the_oracle(tmp_path):
    # the flusher's part on its own: takes of a ring filled with mixed records
    reqs = mixed_requests(seed=13, n=120)
    writer = process_writer(Warehouse(tmp_path / "wh"))
    for r in reqs:
        assert append(writer, r)
    runs = writer._ring.take(2, 2)
    arrow_schema = SCHEMA.arrow_schema()
    table = pa.Table.from_batches([run_to_batch(run, arrow_schema, "r1") for run in runs])
    target = expected(reqs)
    assert table.cast(target.schema).sort_by("request_id").equals(target.sort_by("request_id"))
    writer.close()
