"""The flusher process lands exactly what the thread writer lands, through a ring that wraps,
fills, and survives its flusher being killed."""

from __future__ import annotations

import mmap
import os
import resource
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.procs import wait_until
from ingest import LandingError, SchemaError, Warehouse
from ingest.capture import LandingWriter, ProcessLandingWriter, process_writer_supported
from ingest.capture import _flusher as flusher
from ingest.capture import _spool_layout as slot
from ingest.capture._blocks import run_to_batch
from ingest.capture._spool import REWIND_AT, Spool
from ingest.capture._supervisor import may_raise_flusher
from tests.unit.test_writer_blocks import FEATURES, SCHEMA, landed, requests, write_as_batches

pytestmark = [
    pytest.mark.integration,  # each writer here starts its flusher, a child process
    pytest.mark.timeout(120),
    pytest.mark.skipif(not process_writer_supported(), reason="needs x86-64 Linux (memfd)"),
]


def process_writer(wh: Warehouse, **kw) -> ProcessLandingWriter:
    kw = {"flush_rows": 10**6, "flush_interval": 3600, **kw}
    return ProcessLandingWriter(wh, SCHEMA, "r1", **kw)


def ingest_writer(wh: Warehouse, **kw) -> LandingWriter:
    """The writer a flusher runs (never started: nothing flushes on its own)."""
    return LandingWriter(wh, SCHEMA, "r1", **{"flush_rows": 10**6, **kw})


def test_lands_exactly_what_the_thread_writer_lands(tmp_path):
    reqs = requests(n=400)
    reference = write_as_batches(Warehouse(tmp_path / "thread"), reqs)
    reference.close()
    wh = Warehouse(tmp_path / "process")
    writer = process_writer(wh).start()
    for ts, prefix, x, pred, score, version in reqs:
        assert writer.append_block(ts, prefix, x, pred, score, version)
    n = sum(len(r[2]) for r in reqs)
    assert writer.flush() == n
    s = writer.stats()
    assert (s.captured_rows, s.flushed_rows, s.buffered_rows, s.dropped_rows) == (n, n, 0, 0)
    writer.close()
    expected, got = landed(Warehouse(tmp_path / "thread")), landed(wh)
    assert got.schema.equals(expected.schema, check_metadata=True)
    assert got.equals(expected)


def test_any_array_layout_dtype_and_id_length_lands_as_float64_values(tmp_path):
    # the request path copies float64 C-ordered arrays as they are; anything else is
    # converted first, and ids of 100 different lengths outgrow the cache of record headers
    reqs = [
        (ts, (prefix * 4)[: 1 + k % 100], x, pred, score, version)
        for k, (ts, prefix, x, pred, score, version) in enumerate(requests(seed=5, n=300))
    ]
    reference = write_as_batches(Warehouse(tmp_path / "thread"), reqs)
    reference.close()
    wh = Warehouse(tmp_path / "process")
    writer = process_writer(wh).start()
    for k, (ts, prefix, x, pred, score, version) in enumerate(reqs):
        if k % 3 == 0:
            x = np.asfortranarray(x)
        elif k % 3 == 1:
            x = np.hstack([x, x])[:, : len(FEATURES)]  # a strided view
            pred = pred.astype(np.int64)
        else:
            pred = pred.astype(np.float32)  # 0 and 1: the same values
        assert writer.append_block(ts, prefix, x, pred, score, version)
    writer.close()
    expected, got = landed(Warehouse(tmp_path / "thread")), landed(wh)
    assert got.equals(expected)


def test_runs_of_alike_requests_land_exactly_what_the_thread_writer_lands(tmp_path):
    # the flusher reads the headers of same-shaped records at once: runs of one-row
    # requests, broken by other shapes (rows, version, score, id length), around a ring
    # that wraps every ~250 requests
    rng = np.random.default_rng(11)
    reqs = []
    for k in range(3000):
        rows = 2 if k % 97 == 5 else 1
        version = "v2" if k % 131 == 7 else "v1"
        score = None if k % 89 == 3 else rng.random(rows)
        x = rng.normal(size=(rows, len(FEATURES)))
        pred = rng.integers(0, 2, rows).astype(np.float64)
        prefix = f"{k:040x}" if k % 500 == 250 else f"{k:032x}"
        reqs.append((10**15 + k, prefix, x, pred, score, version))
    reference = write_as_batches(Warehouse(tmp_path / "thread"), reqs)
    reference.close()
    wh = Warehouse(tmp_path / "process")
    writer = process_writer(wh, spool_rows=100).start()
    for ts, prefix, x, pred, score, version in reqs:
        while not writer.append_block(ts, prefix, x, pred, score, version):
            pass  # full: the flusher empties it within a few ms
    writer.close()
    expected, got = landed(Warehouse(tmp_path / "thread")), landed(wh)
    assert got.equals(expected)


def test_a_small_ring_wraps_many_times_and_keeps_every_row_once(tmp_path):
    # ~60 rows of room; 3,000 requests of 1-32 rows go round it many times
    wh = Warehouse(tmp_path / "wh")
    writer = process_writer(wh, spool_rows=60, flush_rows=500, flush_interval=0.05).start()
    reqs = requests(seed=3, n=3000)
    accepted = []
    for ts, prefix, x, pred, score, version in reqs:
        while not writer.append_block(ts, prefix, x, pred, score, version):
            pass  # full: the flusher empties it within a few ms
        accepted += [f"{prefix}-{j}" for j in range(x.shape[0])]
    writer.close()
    got = landed(wh)
    assert sorted(got["request_id"].to_pylist()) == sorted(accepted)
    s = writer.stats()
    # the retried appends above were counted as captured-and-dropped each time they failed
    assert s.flushed_rows == len(accepted) == s.captured_rows - s.dropped_rows
    assert s.buffered_rows == 0


def test_a_new_ring_is_in_memory_before_its_first_lap():
    # its pages are allocated and mapped at creation: the request path never faults them in
    ring = Spool.create(8 << 20)
    x, pred = np.ones((32, 30)), np.ones(32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    while ring.put_block(1, "r", x, pred, None, "v1"):
        pass  # never taken: one whole lap, up to full
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert ring.get(slot.WRITE_POS) > ring.capacity - 10_000
    assert faults < ring.capacity // mmap.PAGESIZE // 20, faults  # 2,048 pages
    ring.close()


def test_an_emptied_ring_starts_again_at_its_front_and_the_consumer_follows():
    ring = Spool.create(3 * REWIND_AT)
    x, pred = np.arange(32 * 3, dtype=float).reshape(32, 3), np.ones(32)
    ids = []
    while ring.get(slot.WRITE_POS) < REWIND_AT:
        ids.append(f"r{len(ids)}")
        assert ring.put_block(1, ids[-1], x, pred, None, "v1")
    record = ring.get(slot.WRITE_POS) // len(ids)
    taken = ring.take(3)
    assert ring.used() == 0
    assert ring.put_block(2, "next", x + 1, pred, None, "v1")
    # at the front, not where the last lap left off; the skipped bytes are not "written"
    assert ring.get(slot.WRITE_POS) % ring.capacity == record
    assert ring.get(slot.SKIPPED) == ring.capacity - len(ids) * record
    assert ring.written() == (len(ids) + 1) * record
    assert ring.used() == record
    (after,) = ring.take(3)
    taken_ids = [i for run in taken for i in run.prefixes.to_pylist()]
    assert taken_ids == ids and after.prefixes.to_pylist() == ["next"]
    np.testing.assert_array_equal(after.features, x + 1)
    assert ring.used() == 0 and ring.get(slot.READ_POS) == ring.get(slot.WRITE_POS)
    ring.close()


def test_a_ring_emptied_many_times_over_keeps_every_row_once(tmp_path):
    # ~22,000 rows of room: every time the flusher empties it past REWIND_AT the
    # request path starts again at its front, while the flusher may be reading
    wh = Warehouse(tmp_path / "wh")
    writer = process_writer(wh, spool_rows=22_000, flush_rows=5_000, flush_interval=0.05)
    writer.start()
    accepted = []
    for i, (ts, prefix, x, pred, score, version) in enumerate(requests(seed=4, n=6000)):
        while not writer.append_block(ts, prefix, x, pred, score, version):
            pass
        accepted += [f"{prefix}-{j}" for j in range(x.shape[0])]
        if i % 150 == 0:  # a pause in the traffic: the flusher empties the ring
            wait_until(lambda: writer._ring.used() == 0, timeout=10)
    writer.close()
    assert writer._ring.get(slot.SKIPPED) > writer._ring.capacity  # several skips
    assert sorted(landed(wh)["request_id"].to_pylist()) == sorted(accepted)


def test_a_full_ring_drops_and_counts_without_blocking(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    writer = process_writer(wh, spool_rows=20)  # not started: nobody empties the ring
    x = np.ones((8, len(FEATURES)))
    results = [writer.append_block(1, f"r{i}", x, np.ones(8), None, "v1") for i in range(10)]
    assert results[0] and not results[-1]
    kept = sum(results) * 8
    s = writer.stats()
    assert (s.captured_rows, s.dropped_rows, s.buffered_rows) == (80, 80 - kept, kept)
    writer.close()  # starts a flusher to publish what the ring holds
    assert landed(wh).num_rows == kept == writer.stats().flushed_rows


def test_a_killed_flusher_is_restarted_and_its_lost_rows_counted(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    writer = process_writer(wh).start()
    x = np.ones((4, len(FEATURES)))
    for i in range(10):
        assert writer.append_block(1_000_000 * i, f"a{i}", x, np.ones(4), None, "v1")
    # the flusher takes the 40 rows into its own buffer (flush_rows is far away); rows
    # still in the ring would survive it (the next flusher takes them)
    wait_until(lambda: writer._ring.get(slot.TAKEN) == 40, timeout=30)
    first = writer._flusher.proc.pid
    os.kill(first, signal.SIGKILL)
    writer._flusher.proc.wait(10)
    writer.flush()  # notices the death, restarts, and publishes what came after
    for i in range(5):
        assert writer.append_block(1_000_000 * i, f"b{i}", x, np.ones(4), None, "v1")
    assert writer.flush() == 20
    assert writer._flusher.proc.pid != first
    s = writer.stats()
    assert (s.captured_rows, s.flushed_rows, s.dropped_rows, s.buffered_rows) == (60, 20, 40, 0)
    writer.close()
    assert sorted(landed(wh)["request_id"].to_pylist()) == sorted(
        f"b{i}-{j}" for i in range(5) for j in range(4)
    )


def test_start_returns_once_the_flusher_takes_rows_and_fails_if_it_cannot_start(
    tmp_path, monkeypatch
):
    # a server serves as soon as start() returns: its flusher must be up by then
    writer = process_writer(Warehouse(tmp_path / "wh")).start()
    pid = writer._flusher.proc.pid
    assert writer._ring.get(slot.READY) == pid
    # it runs from the project root, where ``python -m ingest...`` resolves uninstalled
    assert Path(os.readlink(f"/proc/{pid}/cwd")) == Path(__file__).resolve().parents[2]
    writer.close()
    broken = process_writer(Warehouse(tmp_path / "broken"))
    monkeypatch.setattr(sys, "executable", "/bin/false")  # a flusher that exits at once
    # it may exit before or after start() hands it its config; either way start() says so,
    # and a failed start can be tried again
    for _ in range(5):
        with pytest.raises(LandingError, match="exited with 1 before it could be ready"):
            broken.start()


def test_a_mismatched_block_is_refused_and_nothing_is_queued(tmp_path):
    writer = process_writer(Warehouse(tmp_path / "wh"))
    with pytest.raises(SchemaError, match="shape"):
        writer.append_block(1, "x", np.ones((2, 5)), np.ones(2), None, "v1")
    assert writer.stats().captured_rows == 0
    writer.close()


def test_rows_not_yet_taken_by_the_flusher_have_an_age(tmp_path):
    writer = process_writer(Warehouse(tmp_path / "wh"))  # not started: nothing takes rows
    assert writer.stats().oldest_buffered_age_seconds == 0.0
    writer.append_block(1, "a", np.ones((2, len(FEATURES))), np.ones(2), None, "v1")
    first = writer.stats().oldest_buffered_age_seconds
    writer.append_block(2, "b", np.ones((2, len(FEATURES))), np.ones(2), None, "v1")
    assert 0 < first <= writer.stats().oldest_buffered_age_seconds < 5
    writer.close()
    assert writer.stats().oldest_buffered_age_seconds == 0.0


def test_the_flusher_is_woken_once_the_ring_is_a_quarter_full(tmp_path):
    # between looks the flusher sleeps on the eventfd (up to POLL): a burst must not wait
    writer = process_writer(Warehouse(tmp_path / "wh"), spool_rows=40)  # not started
    x = np.ones((1, len(FEATURES)))
    while 4 * writer._ring.used() <= writer._ring.capacity:
        with pytest.raises(BlockingIOError):  # nothing written to it yet
            os.eventfd_read(writer._flusher.wake_fd)
        assert writer.append_block(1, "r", x, np.ones(1), None, "v1")
    assert os.eventfd_read(writer._flusher.wake_fd) == 1
    writer.close()
    assert writer.stats().flushed_rows == writer.stats().captured_rows
    # appends after close reach the quarter mark again without writing to a closed fd
    while 4 * writer._ring.used() <= writer._ring.capacity:
        assert writer.append_block(1, "r", x, np.ones(1), None, "v1")


@pytest.mark.parametrize(
    ("room", "rate", "due", "expected"),
    [
        (-1.0, 0.0, 0.5, flusher.BUSY_POLL),  # already past the fill mark: look again soon
        (0.0, 1e9, 0.5, flusher.BUSY_POLL),
        (1e6, 0.0, 0.5, 0.5),  # nothing arriving: sleep until the flush is due
        (1e6, 0.0, 60.0, flusher.MAX_PAUSE),  # a long FLUSH_INTERVAL: capped
        (1e6, 1e7, 0.5, 0.1),  # the fill mark is reached in 100 ms, before the flush
        (1e6, 1e6, 0.3, 0.3),  # the flush comes first
        (1e6, 1e6, -2.0, flusher.BUSY_POLL),  # overdue
        (1e3, 1e9, 0.5, flusher.BUSY_POLL),  # 1 us of room: the shortest pause
    ],
)
def test_the_flusher_sleeps_until_a_flush_is_due_or_the_ring_an_eighth_full(
    room, rate, due, expected
):
    assert flusher.pause(room, rate, due) == pytest.approx(expected)


def test_rows_are_due_flush_interval_after_they_were_accepted_not_after_they_were_taken(
    tmp_path,
):
    # the flusher's pause and flush work from the requests' own timestamps: a row that
    # waited in the spool is not held a full FLUSH_INTERVAL more once taken
    writer = ingest_writer(Warehouse(tmp_path / "wh"), flush_interval=2.0)
    ring = Spool.create(1 << 16)
    looked = time.monotonic() - 10  # the flusher's last take, long before these rows
    assert ring.first_ts() is None
    assert flusher._due_in(ring, writer, 0.0, looked) == flusher.POLL  # nothing anywhere
    short = ingest_writer(Warehouse(tmp_path / "short"), flush_interval=0.05)
    assert flusher._due_in(ring, short, 0.0, looked) == 0.05  # never later than its interval
    accepted = time.time() - 0.5
    x = np.ones((3, len(FEATURES)))
    for k in range(3):  # in ring order: the first is the oldest
        ts = int((accepted + 0.1 * k) * 1e6)
        assert ring.put_block(ts, f"r{k}", x, np.ones(3), None, "v1")
    assert ring.first_ts() == int(accepted * 1e6)
    assert flusher._due_in(ring, writer, 0.0, looked) == pytest.approx(1.5, abs=0.05)
    # a row cannot have waited longer than since the last take, whatever its stamp says
    recent = time.monotonic() - 0.2
    assert flusher._due_in(ring, writer, 0.0, recent) == pytest.approx(1.8, abs=0.05)
    taken = ring.take(len(FEATURES))
    batches = [run_to_batch(run, writer.arrow_schema, "r1") for run in taken]
    since = flusher._accepted_at(int(taken[0].ts_us.min()), looked)
    writer.extend_checked(batches, since=since)
    assert ring.first_ts() is None
    assert writer.stats().oldest_buffered_age_seconds == pytest.approx(0.5, abs=0.05)
    assert flusher._due_in(ring, writer, 0.0, looked) == pytest.approx(1.5, abs=0.05)
    # a failing store is looked at again at its next retry, not in a busy loop
    retry_at = time.monotonic() + 5.0
    assert flusher._due_in(ring, writer, retry_at, looked) == pytest.approx(5.0, abs=0.05)
    ring.close()


def test_a_ring_at_its_limit_logs_dropping_once_and_recovers_once_drained(tmp_path, caplog):
    writer = process_writer(Warehouse(tmp_path / "wh"), spool_rows=20)  # not started yet
    ring = writer._ring
    used = ring.used

    def append(rows: int) -> bool:
        return writer.append_block(1, "r", np.ones((rows, len(FEATURES))), np.ones(rows), None, "v")

    assert append(16)
    big = used()
    assert append(1)
    small = used() - big
    while ring.capacity - used() >= big:
        assert append(1)
    with caplog.at_level("WARNING", logger="driftlake.ingest.capture.process_writer"):
        # at the limit a 16-row request is refused and a 1-row one still fits, alternately
        for _ in range(3):
            assert ring.capacity - used() >= small
            assert not append(16)
            assert append(1)
        assert [r.message.split()[0] for r in caplog.records] == ["event=capture_dropping"]
        writer.start()
        wait_until(lambda: used() == 0)
        assert append(1)
        events = [r.message.split()[0] for r in caplog.records]
        assert events == ["event=capture_dropping", "event=capture_recovered"]
    writer.close()


@pytest.mark.skipif(not may_raise_flusher(), reason="needs CAP_SYS_NICE or RLIMIT_NICE >= 15")
def test_an_idle_flusher_is_raised_when_the_spool_fills_and_idles_again_once_drained(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    writer = process_writer(wh, spool_rows=200).start()
    pid = writer._flusher.proc.pid
    wait_until(lambda: os.sched_getscheduler(pid) == os.SCHED_IDLE)
    os.kill(pid, signal.SIGSTOP)  # a flusher that gets no CPU, as on a saturated core
    try:
        ring, rows, x = writer._ring, 0, np.ones((10, len(FEATURES)))
        while 4 * ring.used() <= ring.capacity:
            assert os.sched_getscheduler(pid) == os.SCHED_IDLE
            assert writer.append_block(1, f"r{rows}", x, np.ones(10), None, "v1")
            rows += 10
        # the append that passed a quarter raised every thread to nice 5
        for tid in os.listdir(f"/proc/{pid}/task"):
            assert os.sched_getscheduler(int(tid)) == os.SCHED_OTHER
            assert os.getpriority(os.PRIO_PROCESS, int(tid)) == flusher.NICE
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_until(lambda: os.sched_getscheduler(pid) == os.SCHED_IDLE)  # drained: idle again
    os.kill(pid, signal.SIGSTOP)
    try:  # whoever waits for the flusher raises it first, whatever the spool holds
        with pytest.raises(LandingError, match="did not flush"):
            writer.flush(timeout=0.2)
        assert os.sched_getscheduler(pid) == os.SCHED_OTHER
    finally:
        os.kill(pid, signal.SIGCONT)
    writer.close()
    assert landed(wh).num_rows == rows == writer.stats().flushed_rows
