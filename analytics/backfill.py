"""Backfill: recompute the drift history of a time range from the landing zone, on Dask.

A backfill cuts ALL rows of the range into windows exactly as the live job would (event-time
order, count-based, window ids from 0) and tests them in parallel, in tasks of consecutive
windows, writing to its own history tree ``backfill/<name>/`` so the live history is never
touched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl
from distributed import Client

from analytics.detect import BATCH_ROWS, DetectConfig, WindowRun, WindowSpec
from analytics.profile import ReferenceProfile
from analytics.windows import KEY_SCHEMA, before, plan_windows
from ingest import FileVanishedError, LandingError, Warehouse, hold
from ingest.feed import reading_order, unread_from_us
from ingest.listing import LandingFile, landing_listing
from ingest.paths import backfill_root, drift_dir, partition_hour_us
from ingest.reader import read_many_keys

FILE_WINDOWS = 5_000
KEY_FILES = 100  # landing files whose keys one planning task reads, at most
GROUP_BYTES = 32 << 20  # landing bytes whose keys are read before their windows are planned
FIRST_GROUP_BYTES = 2 << 20  # the first group's: see _groups
log = logging.getLogger("driftlake.analytics.backfill")
ATTEMPTS = 3


@dataclass(frozen=True)
class BackfillReport:
    """What a backfill did and where its history is.

    ``unreadable`` holds the landing paths it could not use: files that failed to read,
    and files of the range's hours that are not the project's (left for quarantine).
    """

    root: str
    files: int
    rows: int
    windows: int
    drifted_windows: int
    unreadable: tuple[str, ...]
    seconds: float


def _keys_of(
    warehouse: Warehouse, paths: Sequence[str]
) -> tuple[pl.DataFrame, dict[str, int], list[str]]:
    """The planning keys of several files (``file`` as the index of its path in ``paths``:
    one string per row would be most of what is sent back), each replica's newest row among
    them, and the paths not readable."""
    keys, failed = read_many_keys(warehouse, paths)
    for exc in failed:
        if isinstance(exc, FileVanishedError):
            raise exc
        log.error("event=backfill_unreadable path=%s reason=%s", exc.path, exc.reason)
    high = dict(keys.group_by("replica").agg(pl.col("ts").max()).iter_rows())
    return keys, high, [exc.path for exc in failed]


class _Keys:
    """The planning keys of some landing files, being read on the workers ``KEY_FILES`` files
    a task (a task per file would cost more than reading it)."""

    def __init__(self, client: Client, warehouse: Warehouse, files: list[str]) -> None:
        threads = sum(client.nthreads().values()) or 1
        size = max(1, min(KEY_FILES, -(-len(files) // threads)))
        self.files = files
        self.chunks = [files[lo : lo + size] for lo in range(0, len(files), size)]
        # ahead of the windows already submitted: they are planned while those are tested
        self.futures = client.map(
            _keys_of, [warehouse] * len(self.chunks), self.chunks, pure=False, priority=1
        )
        self.client = client

    def result(self, high: dict[str, int]) -> tuple[pl.DataFrame, list[str]]:
        """The keys (columns of ``KEY_SCHEMA``), and the files not readable; ``high`` (each
        replica's newest row read) is raised to the newest of these files' rows."""
        parts = self.client.gather(self.futures)
        names = pl.Series("file", self.files, pl.String)
        frames, unreadable, at = [], [], 0
        for chunk, (keys, newest, bad) in zip(self.chunks, parts, strict=True):
            frames.append(keys.with_columns(names.gather(keys["file"] + at)))
            for replica, ts in newest.items():
                high[replica] = max(high.get(replica, ts), ts)
            unreadable += bad
            at += len(chunk)
        frame = pl.concat(frames) if frames else pl.DataFrame(schema=KEY_SCHEMA)
        return frame.select(list(KEY_SCHEMA)), unreadable


def backfill(
    client: Client,
    warehouse: Warehouse,
    profile: ReferenceProfile,
    config: DetectConfig,
    *,
    window_size: int,
    name: str,
    start: datetime | None = None,
    end: datetime | None = None,
    batch_rows: int = BATCH_ROWS,
) -> BackfillReport:
    """Recompute the history of rows with ``start <= ts < end`` into ``backfill/<name>/``.

    Parameters
    ----------
    client
        Dask client; key reading and window tests both run on its workers.
    warehouse, profile, config
        As for the live job.
    window_size
        Rows per window (use the live job's to reproduce its history).
    name
        The backfill's name: its history lands under ``backfill/<name>/model=<m>/``.
    start, end
        Event-time range (UTC); None means unbounded.

    While it runs, the backfill holds a progress mark at ``start``, so compaction and
    retention leave its hours alone; should a file still vanish (a compaction that was
    already running), the backfill lists again and starts over: windows are rewritten, never
    duplicated.
    """
    started = time.perf_counter()
    model = profile.model
    root = backfill_root(name)
    since = None if start is None else int(start.astimezone(UTC).timestamp() * 1e6)
    with hold(warehouse, model, f"backfill-{name}", since or 0):
        warehouse.remove_tree(drift_dir(model, root))  # a rerun recomputes the whole range
        grouped = True
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return _backfill_once(
                    client, warehouse, profile, config, window_size, batch_rows, root, since,
                    end, started, grouped,
                )  # fmt: skip
            except FileVanishedError as exc:
                log.warning("event=backfill_restart attempt=%d reason=%s", attempt, exc)
            except _OutOfOrder as exc:
                # a file out of its hour, or a replica's files out of publication order (not a
                # capture writer's): plan all the range's rows in one pass instead
                log.warning("event=backfill_ungrouped reason=%s", exc)
                warehouse.remove_tree(drift_dir(model, root))
                grouped = False
    raise LandingError(
        f"backfill {name}: landing files vanished during each of {ATTEMPTS} attempts; "
        "is retention deleting this range? Retry later"
    )


def _backfill_once(
    client: Client,
    warehouse: Warehouse,
    profile: ReferenceProfile,
    config: DetectConfig,
    window_size: int,
    batch_rows: int,
    root: str,
    since: int | None,
    end: datetime | None,
    started: float,
    grouped: bool,
) -> BackfillReport:
    model = profile.model
    listing = landing_listing(warehouse, model, since_us=since)
    # a backfill reads, it does not maintain: rejected files are reported, the live job
    # (or compaction) quarantines them
    for r in listing.rejected:
        log.error("event=backfill_unreadable path=%s reason=%s", r.path, r.reason)
    unreadable = [r.path for r in listing.rejected]
    until = None if end is None else int(end.astimezone(UTC).timestamp() * 1e6)
    # Files are planned a group at a time, in the live job's reading order (oldest hour
    # first, each replica's files in publication order): a landing file holds rows of its
    # hour only and a replica publishes its rows in order, so the windows closed below what
    # the files not read yet can hold are those of one pass over all rows. The next group's
    # keys are read while this one's are planned and the ones before tested, and only two
    # groups' keys (and the rows of the open window) sit in this process.
    pending = pl.DataFrame(schema=KEY_SCHEMA)
    run = WindowRun(client, warehouse, profile, config, batch_rows)
    running: list[WindowRun] = []
    windows = rows = drifted = 0
    groups = _groups(reading_order(listing.files)) if grouped else [list(listing.files)]
    high: dict[str, int] = {}  # each replica's newest row read
    cursor: tuple[int, str] | None = None  # the end of the last window cut
    reading = [_Keys(client, warehouse, [f.path for f in groups[0]])]
    for i, unread in enumerate(_left_after(groups)):
        if i + 1 < len(groups):  # the next group's keys are read while this one is planned
            reading.append(_Keys(client, warehouse, [f.path for f in groups[i + 1]]))
        keys, bad = reading.pop(0).result(high)
        unreadable += bad
        group = groups[i]
        if since is not None:
            keys = keys.filter(pl.col("ts") >= since)
        if until is not None:
            keys = keys.filter(pl.col("ts") < until)
        if cursor is not None and not keys.filter(before(cursor)).is_empty():
            raise _OutOfOrder(f"a file of {group[0].path.rsplit('/', 1)[0]} holds an earlier row")
        final = unread_from_us(unread, high)
        watermark = 2**62 if final is None else final - 1
        rows += keys.height
        plans, pending = plan_windows(
            pl.concat([pending, keys]), watermark, window_size, windows, None
        )
        windows += len(plans)
        cursor = plans[-1].end_key if plans else cursor
        while plans:
            # a history file (and the verdicts held here) per FILE_WINDOWS windows: a long
            # range's history never sits whole in this process
            room = FILE_WINDOWS - len(run.specs)
            run.submit(WindowSpec.from_plans(model, plans[:room], history_root=root))
            plans = plans[room:]
            if len(run.specs) == FILE_WINDOWS:
                running.append(run)
                run = WindowRun(client, warehouse, profile, config, batch_rows)
        while len(running) > 1:  # the newest full file's tasks keep the workers busy
            drifted += int(running.pop(0).finish().dataset_drift.sum())
    for part in [*running, run]:
        drifted += int(part.finish().dataset_drift.sum())
    report = BackfillReport(
        root=root,
        files=len(listing.files),
        rows=rows,
        windows=windows,
        drifted_windows=drifted,
        unreadable=tuple(unreadable),
        seconds=time.perf_counter() - started,
    )
    log.info(
        "event=backfill_done root=%s files=%d rows=%d windows=%d drifted=%d seconds=%.2f",
        root,
        report.files,
        report.rows,
        report.windows,
        report.drifted_windows,
        report.seconds,
    )
    return report


class _OutOfOrder(Exception):
    """A landing file holds a row earlier than its hour, or than its replica's files before."""


def _groups(files: list[LandingFile]) -> list[list[LandingFile]]:
    """``files`` cut into consecutive runs of about ``GROUP_BYTES`` (the last may be less);
    the first runs are smaller, doubling from ``FIRST_GROUP_BYTES``, so the workers start
    testing windows soon after the backfill starts."""
    groups: list[list[LandingFile]] = [[]]
    size, limit = 0, min(FIRST_GROUP_BYTES, GROUP_BYTES)
    for f in files:
        if size >= limit:
            groups.append([])
            size, limit = 0, min(2 * limit, GROUP_BYTES)
        groups[-1].append(f)
        size += f.size
    return groups


def _left_after(groups: list[list[LandingFile]]) -> list[dict[str | None, int]]:
    """For each group, what the groups after it hold: each replica (None: compacted files)
    with the start of the earliest hour of its files there."""
    out: list[dict[str | None, int]] = []
    left: dict[str | None, int] = {}
    for group in reversed(groups):
        out.append(dict(left))
        for f in reversed(group):  # reading order is oldest hour first
            left[f.replica] = partition_hour_us(f.path.rsplit("/", 1)[0])
    return out[::-1]
