"""What a multi-host run must show, checked on a warehouse :class:`Snapshot`: every accepted
row landed once from both replicas; one history window per id from 0, each over both
replicas; the shifted features flagged; and the history exactly what a one-shot backfill and
scipy compute from the landing rows. Each check raises AssertionError saying what is wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl
from scipy.stats import ks_2samp

from harness import REFERENCE
from harness._multihost_services import Plan
from harness._multihost_snapshot import Snapshot
from ingest import PREDICTION
from ingest.paths import history_window_range
from serving.dataset import DRIFT_SHIFTS, LABEL

SHIFTED = tuple(DRIFT_SHIFTS)  # the features run.py --drift true moves
_ORDER = ["ts", "request_id"]  # the event-time order windows are cut in (analytics.windows)
# every shifted feature is flagged in at least this share of the fully shifted windows: a
# 1-sigma shift in 100 rows gives KS ~0.38, against a Bonferroni threshold of ~0.2
FLAGGED_SHARE = 0.9


@dataclass(frozen=True)
class HistoryFacts:
    windows: int
    drifted_windows: int
    first_shifted_window: int  # the first window of shifted rows only
    flagged: dict[str, int]  # feature -> windows that flagged it (only features flagged)
    history_files: int  # objects holding them


def check_landing(snap: Snapshot, replicas: set[str], accepted_rows: int) -> dict[str, int]:
    """Every accepted row landed exactly once, from every replica; return rows per replica."""
    land = snap.landing
    assert land.height == accepted_rows, (
        f"{land.height} landing rows for {accepted_rows} accepted rows"
    )
    assert land["request_id"].n_unique() == land.height, "a request id landed twice"
    by = dict(land.group_by("replica").len().iter_rows())
    assert set(by) == replicas, f"landing rows by replica {by}; expected every one of {replicas}"
    return by


def check_history(
    snap: Snapshot, plan: Plan, replicas: set[str], accepted_rows: int
) -> HistoryFacts:
    """One window per id 0..n-1, ``window_size`` rows each, every window over all
    ``replicas``, the history objects holding each window once, the checkpoint at the end
    of the rows, no late row; the shifted features flagged in the shifted windows."""
    n = accepted_rows // plan.window_size
    hist = snap.history
    windows = (
        hist.group_by("window_id", maintain_order=True)
        .agg(
            pl.len().alias("features"),
            pl.col("feature").n_unique().alias("distinct"),
            pl.col("rows", "replica_names", "dataset_drift").first(),
        )
        .sort("window_id")
    )
    assert windows["window_id"].to_list() == list(range(n)), (
        f"window ids {windows['window_id'].to_list()}; expected 0..{n - 1} once each"
    )
    width = windows["features"][0]
    assert (windows["features"] == width).all() and (windows["distinct"] == width).all(), (
        "a window has a feature twice or misses one"
    )
    assert (windows["rows"] == plan.window_size).all()
    names = {tuple(r) for r in windows["replica_names"]}
    assert names == {tuple(sorted(replicas))}, f"windows' replicas {names}"
    covered = sorted(r for f in snap.history_files if (r := history_window_range(f)))
    ids = [i for first, last in covered for i in range(first, last + 1)]
    assert len(covered) == len(snap.history_files) and ids == list(range(n)), (
        f"history objects in the bucket do not hold windows 0..{n - 1} once each: "
        f"{snap.history_files}"
    )
    cp = snap.checkpoint
    assert cp["next_window_id"] == n and cp["rows_tested_total"] == n * plan.window_size, cp
    assert cp["pending_rows"] == accepted_rows - n * plan.window_size, cp
    assert cp["late_rows_total"] == 0, f"late rows: the live windows are not the backfill's {cp}"

    first = math.ceil(plan.drift_start_row / plan.window_size)
    shifted = hist.filter(pl.col("window_id") >= first)
    assert shifted["window_id"].n_unique() >= 5, f"only windows {first}..{n - 1} are shifted"
    assert shifted["dataset_drift"].all(), "a window of shifted rows has no dataset drift"
    share = shifted.group_by("feature").agg(pl.col("drifted").mean())
    share_of = dict(share.iter_rows())
    low = {f: share_of[f] for f in SHIFTED if share_of[f] < FLAGGED_SHARE}
    assert not low, f"shifted features flagged in too few shifted windows: {low}"
    flagged = hist.filter(pl.col("drifted")).group_by("feature").len().sort("len")
    return HistoryFacts(
        windows=n,
        drifted_windows=int(windows["dataset_drift"].sum()),
        first_shifted_window=first,
        flagged=dict(flagged.reverse().iter_rows()),
        history_files=len(snap.history_files),
    )


def check_exact(snap: Snapshot, plan: Plan) -> int:
    """The live history equals the one-shot backfill's (but for ``computed_at``), and every
    window's statistics equal scipy's ``ks_2samp`` over its rows, cut from the landing rows
    in event-time order; return how many statistics were compared."""
    live, again = snap.history.drop("computed_at"), snap.backfill.drop("computed_at")
    assert again.height, "the backfill wrote no history"
    assert live.equals(again), "the live history differs from the one-shot backfill's"

    ref = pl.read_parquet(REFERENCE)
    ref = ref.with_columns(pl.col(LABEL).cast(pl.Float64).alias(PREDICTION))
    rows = snap.landing.sort(_ORDER)
    compared = 0
    for w in live.group_by("window_id", maintain_order=True).first().iter_rows(named=True):
        cut = rows.slice(w["window_id"] * plan.window_size, plan.window_size)
        assert cut["request_id"][0] == w["first_request_id"], w["window_id"]
        assert cut["request_id"][-1] == w["last_request_id"], w["window_id"]
        feats = live.filter(pl.col("window_id") == w["window_id"])
        for f in feats.select("feature", "statistic", "p_value").iter_rows():
            expected = ks_2samp(ref[f[0]].to_numpy(), cut[f[0]].to_numpy())
            assert f[1] == expected.statistic, (w["window_id"], f, expected)
            assert abs(f[2] - expected.pvalue) <= 1e-12, (w["window_id"], f, expected)
            compared += 1
    return compared
