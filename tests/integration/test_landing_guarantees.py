"""A real model server's flush guarantees: SIGTERM lands every row, SIGKILL loses at most the
unflushed buffer, and a landing zone that refuses writes never fails or slows predictions."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import httpx
import polars as pl
import pytest

from harness.procs import wait_until
from harness.servers import (
    ServerHandle,
    holdout_features,
    landing_frame,
    model_server,
    request_body,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

HOLDOUT = holdout_features()
COLUMNS = HOLDOUT.columns


class Sender:
    """Posts request batches and records, per accepted row, its id and when it was answered."""

    def __init__(self, server: ServerHandle) -> None:
        self.url = f"{server.url}/get-prediction"
        self.client = httpx.Client(timeout=30, trust_env=False)
        self.ids: list[str] = []
        self.answered: list[float] = []  # monotonic time each row's response arrived
        self.latency: list[float] = []
        self.i = 0

    def send(self, rows: int) -> list[str]:
        chunk = HOLDOUT.slice(self.i % (HOLDOUT.height - rows), rows)
        self.i += rows
        started = time.monotonic()
        resp = self.client.post(
            self.url,
            content=request_body(COLUMNS, chunk.rows()),
            headers={"content-type": "application/json"},
        )
        done = time.monotonic()
        assert resp.status_code == 200, resp.text[:300]
        ids = resp.json()["request_ids"]
        self.ids += ids
        self.answered += [done] * len(ids)
        self.latency.append(done - started)
        return ids


def landed_ids(wh: Path) -> list[str]:
    frame = landing_frame(wh)
    return [] if frame.is_empty() else frame["request_id"].to_list()


@pytest.mark.parametrize("capture_process", [True, False], ids=["process", "thread"])
def test_sigterm_publishes_every_accepted_row_exactly_once(tmp_path, capture_process):
    wh = tmp_path / "wh"
    # flushes by count run while traffic flows; SIGTERM must publish the rest
    with model_server(
        wh, replica="term", flush_rows=64, flush_interval=600, capture_process=capture_process
    ) as server:
        sender = Sender(server)
        for i in range(60):
            sender.send(1 + i % 7)
        # let any count flush finish (its rows still count as buffered), then make sure
        # rows are waiting, without a thread-timing race deciding it
        wait_until(lambda: server.metrics()["driftlake_capture_buffer_rows"] < 64, timeout=30)
        if server.metrics()["driftlake_capture_buffer_rows"] < 63:
            sender.send(1)
        m = server.metrics()
        assert m["driftlake_capture_flushed_rows_total"] > 0
        assert 0 < m["driftlake_capture_buffer_rows"] < 64
        assert server.stop() == 0
    ids = landed_ids(wh)
    assert len(ids) == len(sender.ids) >= sum(1 + i % 7 for i in range(60))
    assert sorted(ids) == sorted(sender.ids)


def flusher_of(pid: int) -> int:
    """The pid of the server's flusher process (its only child)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def wait_exited(pid: int, timeout: float = 60.0) -> None:
    """Wait until ``pid`` (not our child: reparented) has exited."""

    def gone() -> bool:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        return stat.rsplit(")", 1)[1].split()[0] == "Z"

    wait_until(gone, timeout=timeout)


def test_sigkill_of_the_server_loses_nothing_its_flusher_took(tmp_path):
    """With the flusher process (the default), SIGKILL of the server loses no accepted row:
    every row is in shared memory the flusher owns, and an orphaned flusher publishes
    all of it and exits."""
    wh = tmp_path / "wh"
    with model_server(wh, replica="kill-p", flush_rows=10**6, flush_interval=600) as server:
        sender = Sender(server)
        for _ in range(35):
            sender.send(10)
        flusher = flusher_of(server.proc.pid)
        server.proc.kill()
        server.proc.wait(10)
        wait_exited(flusher)
    ids = landed_ids(wh)
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(sender.ids)


def test_sigkill_loses_at_most_the_rows_since_the_last_count_flush(tmp_path):
    """The thread writer (CAPTURE_PROCESS=false, and where the spool is unsupported)."""
    wh = tmp_path / "wh"
    flush_rows = 100
    with model_server(
        wh, replica="kill-n", flush_rows=flush_rows, flush_interval=600, capture_process=False
    ) as server:
        sender = Sender(server)
        for _ in range(35):
            sender.send(10)

        def settled():
            m = server.metrics()
            # a flush in progress still counts its rows as buffered, so this is quiescence
            ok = m["driftlake_capture_buffer_rows"] < flush_rows
            return m if ok and m["driftlake_capture_rows_total"] == 350 else None

        m = wait_until(settled, timeout=30)
        server.proc.kill()
        server.proc.wait(10)
    flushed, buffered = (
        m["driftlake_capture_flushed_rows_total"],
        m["driftlake_capture_buffer_rows"],
    )
    ids = landed_ids(wh)
    assert len(ids) == len(set(ids)) == flushed
    lost = len(sender.ids) - len(ids)
    # the documented bound: at most the rows accepted since the last flush, < FLUSH_ROWS
    assert lost == buffered < flush_rows
    assert len(ids) >= 350 - (flush_rows - 1)
    # what is lost is the newest rows, never a hole in the middle of the stream
    assert set(ids) == set(sender.ids[: len(ids)])


def test_sigkill_loses_at_most_the_rows_of_the_last_flush_interval(tmp_path):
    wh = tmp_path / "wh"
    interval = 0.5
    with model_server(
        wh, replica="kill-t", flush_rows=10**6, flush_interval=interval, capture_process=False
    ) as server:
        sender = Sender(server)
        deadline = time.monotonic() + 3 * interval + 1.0
        while time.monotonic() < deadline:
            sender.send(5)
        m = server.metrics()
        killed = time.monotonic()
        server.proc.kill()
        server.proc.wait(10)
    ids = landed_ids(wh)
    assert len(ids) == len(set(ids)) >= m["driftlake_capture_flushed_rows_total"] > 0
    landed = set(ids)
    lost = [i for i in sender.ids if i not in landed]
    assert len(lost) <= m["driftlake_capture_buffer_rows"]
    assert landed == set(sender.ids[: len(ids)])
    # every lost row was accepted within FLUSH_INTERVAL (+ one flush) of the kill
    window = interval + m["driftlake_capture_last_flush_duration_seconds"] + 0.5
    answered = dict(zip(sender.ids, sender.answered, strict=True))
    assert all(answered[i] >= killed - window for i in lost)
    assert m["driftlake_capture_oldest_row_age_seconds"] <= window


@pytest.mark.parametrize("capture_process", [True, False], ids=["process", "thread"])
def test_unwritable_landing_zone_keeps_serving_buffers_retries_and_counts_drops(
    tmp_path, capture_process
):
    wh = tmp_path / "wh"
    with model_server(
        wh,
        replica="broken",
        flush_rows=10**6,
        flush_interval=0.2,
        max_buffer_rows=60,
        capture_process=capture_process,
    ) as server:
        sender = Sender(server)
        for _ in range(3):
            sender.send(10)
        wait_until(lambda: len(landed_ids(wh)) == 30, timeout=20)
        healthy = list(sender.latency)

        # the staging dir becomes a regular file: every publish now fails (even as root)
        staging = wh / "_staging"
        staging.rmdir()
        staging.write_text("not a directory")
        before_failure = len(sender.latency)
        for _ in range(4):
            sender.send(10)
        wait_until(lambda: server.metrics()["driftlake_capture_flushes_failed_total"] >= 1)
        sender.send(10)
        sender.send(10)  # 60 rows buffered: the bound
        accepted = [*sender.ids]
        dropped = sender.send(10)  # still answered 200, but its rows cannot be kept

        def counted():
            # the flusher process drops when it takes the rows from the spool, a poll later
            m = server.metrics()
            return m if m["driftlake_capture_dropped_rows_total"] >= 10 else None

        m = wait_until(counted, timeout=10)
        assert m["driftlake_capture_dropped_rows_total"] == 10
        assert m["driftlake_capture_buffer_rows"] == 60
        # both writers count alike: each of the 100 rows is flushed, buffered or dropped
        assert m["driftlake_capture_flushed_rows_total"] == 30
        assert m["driftlake_capture_rows_total"] == 100
        assert "event=flush_failed" in server.logs() and "reason=" in server.logs()
        assert "event=capture_dropping" in server.logs()
        failing = sender.latency[before_failure:]
        assert statistics.median(failing) <= max(5 * statistics.median(healthy), 0.05)

        staging.unlink()  # repaired: the buffered rows are published by the next retry
        wait_until(lambda: server.metrics()["driftlake_capture_buffer_rows"] == 0, timeout=40)
        assert "event=flush_recovered" in server.logs()
        assert server.stop() == 0
    ids = landed_ids(wh)
    assert sorted(ids) == sorted(accepted)  # each buffered row published exactly once
    assert not set(dropped) & set(ids)
    frame = landing_frame(wh)
    assert frame.filter(pl.col("request_id").is_duplicated()).is_empty()
