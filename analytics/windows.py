"""Event-time window planning: watermark, count- and time-based tumbling windows, late rows.

Pure functions over the planning keys (``file``, ``row``, ``ts``, ``request_id``,
``replica``); no I/O, so they are tested directly against a brute-force model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from ingest.feed import KEY_SCHEMA

ORDER = ["ts", "request_id"]


def empty_keys() -> pl.DataFrame:
    """Return an empty planning-key frame."""
    return pl.DataFrame(schema=KEY_SCHEMA)


@dataclass(frozen=True)
class WindowPlan:
    """One closed window: its id and the keys of its rows, in event-time order."""

    window_id: int
    keys: pl.DataFrame
    late_rows: int

    @property
    def rows(self) -> int:
        return self.keys.height

    @property
    def start_us(self) -> int:
        return int(self.keys["ts"][0])

    @property
    def end_us(self) -> int:
        return int(self.keys["ts"][-1])

    @property
    def end_key(self) -> tuple[int, str]:
        return int(self.keys["ts"][-1]), str(self.keys["request_id"][-1])

    @property
    def replicas(self) -> tuple[str, ...]:
        return tuple(sorted(self.keys["replica"].unique().to_list()))


def watermark(replica_high_us: Mapping[str, int], now_us: int, max_lateness_us: int) -> int:
    """Return the event time up to which every row is final.

    A replica is live while its newest published row is younger than ``max_lateness``;
    rows up to the oldest live replica's newest row are final (each replica publishes
    its rows in order). With no live replica, rows older than ``max_lateness`` are final.
    """
    floor = now_us - max_lateness_us
    live = [high for high in replica_high_us.values() if high >= floor]
    return min(live) if live else floor


def plan_windows(
    pending: pl.DataFrame,
    watermark_us: int,
    window_size: int,
    next_window_id: int,
    cursor: tuple[int, str] | None,
) -> tuple[list[WindowPlan], pl.DataFrame]:
    """Cut the final pending rows into tumbling windows of ``window_size`` rows.

    Parameters
    ----------
    pending
        Planning keys of every row not yet in a closed window.
    watermark_us
        Rows with ``ts`` at or before it are final.
    window_size
        Rows per window.
    next_window_id
        Id of the first window closed here.
    cursor
        ``(ts, request_id)`` of the last row of the previous window; final rows ordered
        before it arrived late and go into the next window (counted as late).

    Returns
    -------
    windows, remaining
        The closed windows, in order, and the keys still pending (the open window's rows
        and rows past the watermark).
    """
    final = pending.filter(pl.col("ts") <= watermark_us).sort(ORDER)
    later = pending.filter(pl.col("ts") > watermark_us)
    n_windows = final.height // window_size
    # only the first window can hold late rows: each later one starts after the end of the
    # one before it, in this same order
    late = 0
    if cursor is not None and n_windows:
        late = final.head(window_size).filter(before(cursor)).height
    windows = [
        WindowPlan(next_window_id + i, final.slice(i * window_size, window_size), late * (i == 0))
        for i in range(n_windows)  # one iteration per window, not per row
    ]
    remaining = pl.concat([final.slice(n_windows * window_size), later])
    return windows, remaining


def before(cursor: tuple[int, str]) -> pl.Expr:
    """True for keys that sort before ``cursor``, a ``(ts, request_id)``."""
    return (pl.col("ts") < cursor[0]) | (
        (pl.col("ts") == cursor[0]) & (pl.col("request_id") < cursor[1])
    )


def plan_time_windows(
    pending: pl.DataFrame,
    watermark_us: int,
    width_us: int,
    next_window_id: int,
    cursor: tuple[int, str] | None,
) -> tuple[list[WindowPlan], pl.DataFrame]:
    """Cut the final pending rows into tumbling windows of ``width_us`` of event time.

    A window ``[k*width, (k+1)*width)`` closes once the watermark reaches its end; empty
    windows are skipped. Rows whose window already closed (the one holding ``cursor``, or
    earlier) arrived late: they join the first window closed here and are counted as late.

    Returns
    -------
    windows, remaining
        As :func:`plan_windows`.
    """
    final = pending.filter(pl.col("ts") <= watermark_us)
    later = pending.filter(pl.col("ts") > watermark_us)
    bucket = pl.col("ts") // width_us
    closed_end = -(2**62) if cursor is None else (cursor[0] // width_us + 1) * width_us
    late = final.filter(pl.col("ts") < closed_end)
    on_time = final.filter(pl.col("ts") >= closed_end)
    closed = on_time.filter((bucket + 1) * width_us <= watermark_us)
    open_rows = on_time.filter((bucket + 1) * width_us > watermark_us)
    windows: list[WindowPlan] = []
    groups = closed.with_columns(bucket.alias("_b")).partition_by("_b", maintain_order=False)
    for i, keys in enumerate(sorted(groups, key=lambda g: g["_b"][0])):
        keys = keys.drop("_b")
        n_late = 0
        if i == 0 and late.height:
            keys, n_late = pl.concat([late, keys]), late.height
        windows.append(WindowPlan(next_window_id + i, keys.sort(ORDER), n_late))
    if not windows:
        open_rows = pl.concat([late, open_rows])
    return windows, pl.concat([open_rows, later])
