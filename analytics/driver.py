"""The analytics driver: plan windows from landing keys, test them on Dask, record, push.

One cycle: poll the landing feed for new files' keys, advance the watermark, cut the final
rows into windows, run each window as a Dask task (the task reads the rows and writes the
window's history), and only then write the checkpoint (with the feed's mark) and push. A
crash at any point repeats at most the windows whose checkpoint was not yet written, and
those rewrite the same history files: no window is skipped, none is counted twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import polars as pl
from distributed import Client, KilledWorker
from distributed.client import FutureCancelledError

from analytics.checkpoint import Checkpoint, claim_checkpoint, save_checkpoint
from analytics.detect import DetectConfig, WindowResult, WindowSpec, run_windows
from analytics.failpoints import failpoint
from analytics.history import compact_history
from analytics.profile import ReferenceProfile, load_profile
from analytics.push import CycleState, Pusher
from analytics.settings import AnalyticsSettings
from analytics.windows import plan_time_windows, plan_windows, watermark
from ingest import CheckpointError, DriftlakeError, Warehouse
from ingest.feed import advance, poll, release, seal
from ingest.maintain import compact, retain
from ingest.paths import drift_dir, history_window_range

log = logging.getLogger("driftlake.analytics.driver")
CONSUMER = "analytics"  # this job's name in the landing zone's progress marks
# What a cycle can fail with and the loop survives: storage trouble (landing zone, a
# vanished or corrupt file), the network, or Dask giving up on a task or the cluster.
CYCLE_FAILURES = (DriftlakeError, OSError, TimeoutError, KilledWorker, FutureCancelledError)


@dataclass(frozen=True)
class CycleReport:
    """What one cycle did.

    ``quarantined`` holds the landing paths this cycle moved to ``quarantine/``: files that
    could not be read, and files in a landing hour whose name fits no landing pattern.
    """

    new_files: int
    new_rows: int
    watermark_us: int
    windows: tuple[WindowResult, ...]
    pending_rows: int
    seconds: float
    pushed: bool | None = None
    quarantined: tuple[str, ...] = field(default_factory=tuple)
    backlog: bool = False
    """New landing files were left for the next cycles (``max_files_per_cycle`` or
    ``max_rows_per_cycle`` reached)."""


class Driver:
    """Runs analytics cycles for one model against a Dask client.

    Parameters
    ----------
    settings
        The job's settings (window size, correction, warehouse, ...).
    client
        A connected Dask client; windows are tested on its workers.
    profile
        The reference profile; built from ``settings.reference_path`` when omitted.
    """

    def __init__(
        self,
        settings: AnalyticsSettings,
        client: Client,
        profile: ReferenceProfile | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.model = settings.model_name
        self.warehouse = Warehouse(settings.warehouse)
        self.profile = profile or load_profile(settings)
        self.config = DetectConfig.from_settings(settings)
        self.pusher = (
            Pusher(settings.pushgateway, settings.push_timeout) if settings.pushgateway else None
        )
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.checkpoint, self._version = claim_checkpoint(self.warehouse, self.model, self.owner)
        self.cycle_errors = 0
        self.last_result: WindowResult | None = None
        self._lag_us = 0
        self._history_compacted_on: date | None = None
        self._drop_uncommitted_history()

    # -- recovery -----------------------------------------------------------------------
    def _drop_uncommitted_history(self) -> None:
        """Delete history of windows past the checkpoint: a crash left them, they are redone."""
        for f in self.warehouse.list_files(drift_dir(self.model)):
            ids = history_window_range(f.path)
            # a file holds one cycle's windows: all committed, or none
            if ids and ids[0] >= self.checkpoint.next_window_id:
                self.warehouse.delete(f.path)
                log.info("event=history_rolled_back path=%s", f.path)

    # -- one cycle ----------------------------------------------------------------------
    def run_cycle(self, now: float | None = None) -> CycleReport:
        """Run one cycle; ``now`` (epoch seconds) defaults to the wall clock."""
        started = time.perf_counter()
        now_us = int((time.time() if now is None else now) * 1e6)
        cp = self.checkpoint
        # new files' keys; foreign and unreadable files are moved aside with the reason
        # at most max_files_per_cycle files / max_rows_per_cycle rows: a backlog (a driver
        # that was down) is planned in bounded steps
        batch = poll(
            self.warehouse,
            self.model,
            cp.feed,
            max_files=self.settings.max_files_per_cycle,
            max_rows=self.settings.max_rows_per_cycle,
        )
        pending = pl.concat([cp.pending, batch.keys.select(cp.pending.columns)])
        high = dict(cp.replica_high_us)
        for replica, ts in batch.keys.group_by("replica").agg(pl.col("ts").max()).iter_rows():
            high[replica] = max(high.get(replica, ts), ts)
        wm = watermark(high, now_us, int(self.settings.max_lateness * 1e6))
        unread_from = batch.unread_from_us(high)
        if unread_from is not None:
            # files left for the next cycles may hold rows from unread_from on: those are
            # not final yet
            wm = min(wm, unread_from - 1)
        # no hour holding a file left unread is sealed (it would never be listed again)
        seal_before = min([wm - int(self.settings.seal_after * 1e6), *batch.unread.values()])
        if self.settings.window_seconds:
            width = int(self.settings.window_seconds * 1e6)
            plans, remaining = plan_time_windows(pending, wm, width, cp.next_window_id, cp.cursor)
        else:
            size = self.settings.window_size
            plans, remaining = plan_windows(pending, wm, size, cp.next_window_id, cp.cursor)
        limit = self.settings.max_windows_per_cycle
        if limit and len(plans) > limit:
            # catching up: later windows wait for the next cycle, keeping cycles short
            remaining = pl.concat([*(p.keys for p in plans[limit:]), remaining])
            plans = plans[:limit]
        failpoint("planned")
        specs = WindowSpec.from_plans(self.model, plans)
        results: list[WindowResult] = []
        if specs:
            results = run_windows(
                self.client,
                self.warehouse,
                specs,
                # with each task, not scattered: Dask's memory manager drops the copies a
                # broadcast made, leaving a new or surviving worker without it (no tasks, or
                # a lost cycle); with batching a cycle has about one task per thread
                self.profile,
                self.config,
                self.settings.batch_rows,
            )
        failpoint("history_written")
        # Results are durable (the cycle's history file is published): now advance.
        nxt = Checkpoint(
            next_window_id=cp.next_window_id + len(plans),
            cursor=plans[-1].end_key if plans else cp.cursor,
            # hours that closed seal_after before the watermark are no longer listed
            feed=seal(advance(cp.feed, batch), seal_before),
            replica_high_us=high,
            pending=remaining,
            windows_total=cp.windows_total + len(results),
            drifted_windows_total=cp.drifted_windows_total + sum(r.dataset_drift for r in results),
            rows_tested_total=cp.rows_tested_total + sum(p.rows for p in plans),
            late_rows_total=cp.late_rows_total + sum(p.late_rows for p in plans),
            last_drift_us=max(
                [r.spec.end_us for r in results if r.dataset_drift]
                + ([cp.last_drift_us] if cp.last_drift_us else []),
                default=None,
            ),
            quarantined_total=cp.quarantined_total + len(batch.quarantined),
        )
        self._version = save_checkpoint(self.warehouse, self.model, nxt, self.owner, self._version)
        self.checkpoint = nxt
        # the mark is durable: compaction may now rewrite the hours it sealed, except where
        # this job still holds rows
        release(
            self.warehouse,
            self.model,
            CONSUMER,
            nxt.feed,
            holding=nxt.pending["file"].unique().to_list(),
        )
        failpoint("checkpoint_saved")
        if results:
            self.last_result = results[-1]
        elapsed = time.perf_counter() - started
        self._lag_us = now_us - wm
        pushed = self._push(elapsed, self._lag_us)
        report = CycleReport(
            new_files=len(batch.files),
            new_rows=batch.keys.height,
            watermark_us=wm,
            windows=tuple(results),
            pending_rows=remaining.height,
            seconds=elapsed,
            pushed=pushed,
            quarantined=tuple(r.path for r in batch.quarantined),
            backlog=bool(batch.unread),
        )
        log.info(
            "event=cycle new_files=%d new_rows=%d windows=%d drifted=%d pending=%d "
            "quarantined=%d backlog=%s seconds=%.3f",
            report.new_files,
            report.new_rows,
            len(results),
            sum(r.dataset_drift for r in results),
            report.pending_rows,
            len(report.quarantined),
            report.backlog,
            elapsed,
        )
        return report

    def _push(self, cycle_seconds: float, lag_us: int) -> bool | None:
        if self.pusher is None:
            return None
        cp = self.checkpoint
        state = CycleState(
            windows_total=cp.windows_total,
            drifted_windows_total=cp.drifted_windows_total,
            rows_tested_total=cp.rows_tested_total,
            late_rows_total=cp.late_rows_total,
            cycle_errors_total=self.cycle_errors,
            quarantined_total=cp.quarantined_total,
            last_drift_us=cp.last_drift_us,
            cycle_seconds=cycle_seconds,
            landing_lag_seconds=max(lag_us / 1e6, 0.0),
        )
        return self.pusher.push(self.model, self.last_result, state)

    # -- maintenance --------------------------------------------------------------------
    def maintain(self) -> None:
        """Compact the hours this job has sealed (on the Dask cluster) and the closed days of
        its history, then apply retention."""
        policy = self.settings.maintenance
        compact(self.warehouse, self.model, policy.compaction_policy(), client=self.client)
        self._compact_history()
        retain(self.warehouse, self.model, policy.retention_policy())

    def _compact_history(self) -> None:
        compact_history(self.warehouse, self.model, self.checkpoint.next_window_id)
        self._history_compacted_on = datetime.now(UTC).date()

    # -- the loop -----------------------------------------------------------------------
    def run_forever(self, stop: threading.Event, on_cycle=None) -> None:
        """Run a cycle every ``interval`` seconds until ``stop`` is set, maintenance
        (:meth:`maintain`) every ``compact_every`` seconds if that is set, and the compaction
        of the history's closed days once a day in any case.

        A failing cycle is logged, counted and retried next interval; only a CheckpointError
        (another driver took the model over) ends the loop.
        """
        last_maintenance = time.monotonic()
        while not stop.is_set():
            started = time.monotonic()
            try:
                report = self.run_cycle()
                if on_cycle is not None:
                    on_cycle(report)
                if self._history_compacted_on != datetime.now(UTC).date():
                    self._compact_history()  # once a day: a day's cycle files become one
            except CheckpointError:
                raise  # another driver owns the model now, or the state is unreadable
            except CYCLE_FAILURES as exc:
                self.cycle_errors += 1
                log.error(
                    "event=cycle_failed error=%s reason=%s action=retry_next_interval",
                    type(exc).__name__,
                    exc,
                )
                # so DriftJobFailing sees the error count rise even while nothing else moves
                self._push(time.monotonic() - started, self._lag_us)
            every = self.settings.compact_every
            if every and time.monotonic() - last_maintenance >= every:
                last_maintenance = time.monotonic()
                try:
                    self.maintain()
                except (DriftlakeError, OSError) as exc:
                    log.error("event=maintenance_failed reason=%s action=retry_later", exc)
            stop.wait(max(0.0, self.settings.interval - (time.monotonic() - started)))
