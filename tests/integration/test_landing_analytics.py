"""The analytics job on a maintained landing zone (real Dask cluster): compaction between
cycles changes no window, a corrupt file is quarantined and the cycle completes, and a window
spanning two model versions is read and tested with every feature."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from analytics import (
    AnalyticsSettings,
    Driver,
    build_profile,
    load_checkpoint,
    read_history,
)
from analytics.backfill import backfill
from harness import MODEL, REFERENCE
from harness.landing import DAY, holdout_rows, hour_us, write_landing
from ingest import ModelSchema, Warehouse, list_quarantined
from ingest.capture import LandingWriter
from ingest.maintain import compact
from ingest.maintain.settings import MaintenanceSettings
from ingest.manifest import view_partition
from ingest.paths import hour_partition
from ingest.reader import RowSelection, list_landing, read_landing, read_rows, scan_landing
from ingest.reference import load_reference
from ingest.schema import FeatureSpec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

WINDOW = 100


def settings_for(wh: Path, **kw) -> AnalyticsSettings:
    base = {
        "warehouse": str(wh),
        "reference_path": str(REFERENCE),
        "window_size": WINDOW,
        "max_lateness": 1.0,
        "seal_after": 0.0,
        "n_workers": 1,
        "dashboard_address": None,
        "maintenance": MaintenanceSettings(
            compact_grace=0, compact_delete_after=0, landing_retention_days=None
        ),
    }
    return AnalyticsSettings(**{**base, **kw})


def comparable(history: pl.DataFrame) -> pl.DataFrame:
    return history.drop("computed_at")


def test_compaction_between_cycles_changes_no_window(tmp_path, dask_cluster):
    source, live, plain = (Warehouse(tmp_path / n) for n in ("source", "live", "plain"))

    def publish(hours: range) -> None:
        """Write ``hours`` of two replicas to the source, then copy the new files to both."""
        known = {f.path for f in source.list_files("landing")}
        for h in hours:
            for k, replica in enumerate(("r1", "r2")):
                start = DAY + timedelta(hours=h, seconds=k)
                rows = holdout_rows(230, seed=10 * h + k, shift={"mean radius": h * 0.3})
                write_landing(
                    source, rows, replica=replica, start=start, step=timedelta(seconds=13)
                )
        for f in source.list_files("landing"):
            if f.path not in known:
                for target in (live, plain):
                    Path(target.uri(f.path)).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source.uri(f.path), target.uri(f.path))

    drivers = [Driver(settings_for(wh.root), dask_cluster) for wh in (live, plain)]
    publish(range(2))
    for d in drivers:
        d.run_cycle(now=hour_us(2) / 1e6 + 5)
    drivers[0].maintain()  # the job is done with hour 0; it still holds rows of hour 1
    assert not view_partition(live, hour_partition(MODEL, hour_us(0))).uncompacted
    assert view_partition(live, hour_partition(MODEL, hour_us(1))).uncompacted

    publish(range(2, 4))
    for d in drivers:
        d.run_cycle(now=hour_us(4) / 1e6 + 5)
    drivers[0].maintain()  # hours 1 and 2 are due: compacted on the Dask workers
    for h in range(3):
        assert len(live.list_files(hour_partition(MODEL, hour_us(h)))) == 1
    assert view_partition(live, hour_partition(MODEL, hour_us(3))).uncompacted

    publish(range(4, 5))
    for d in drivers:
        d.run_cycle(now=hour_us(8) / 1e6)
    rows = 5 * 2 * 230
    got, want = read_history(live, MODEL), read_history(plain, MODEL)
    assert got["window_id"].unique().sort().to_list() == list(range(rows // WINDOW))
    assert comparable(got).equals(comparable(want))
    cp = load_checkpoint(live, MODEL)
    assert cp.rows_tested_total == rows // WINDOW * WINDOW == cp.windows_total * WINDOW
    assert cp.pending.height == rows % WINDOW

    # a backfill over the compacted landing zone cuts the same windows as over the original
    profile, config = drivers[0].profile, drivers[0].config
    a = backfill(dask_cluster, live, profile, config, window_size=WINDOW, name="a")
    b = backfill(dask_cluster, plain, profile, config, window_size=WINDOW, name="b")
    assert a.rows == b.rows == rows and a.windows == b.windows == rows // WINDOW
    assert comparable(read_history(live, MODEL, a.root)).equals(
        comparable(read_history(plain, MODEL, b.root))
    )
    assert list_landing(live, MODEL, since_us=hour_us(0), until_us=hour_us(3))[0].replica is None


def test_corrupt_file_is_quarantined_and_the_cycle_completes(tmp_path, dask_cluster):
    wh = Warehouse(tmp_path / "wh")
    write_landing(wh, holdout_rows(250), start=DAY + timedelta(minutes=5))
    good = list_landing(wh, MODEL)[0]
    data = Path(wh.uri(good.path)).read_bytes()
    bad = f"{good.path.rsplit('/', 1)[0]}/r9-000000000001-deadbeef.parquet"
    Path(wh.uri(bad)).write_bytes(data[: len(data) // 2])  # truncated mid-write

    driver = Driver(settings_for(wh.root), dask_cluster)
    report = driver.run_cycle(now=hour_us(3) / 1e6)
    assert report.quarantined == (bad,)
    moved = list_quarantined(wh)
    assert moved == [bad.replace("landing/", "quarantine/", 1)]
    note = json.loads(wh.read_bytes(moved[0] + ".reason.json"))
    assert note["source"] == bad and "parquet" in note["reason"].lower()
    assert load_checkpoint(wh, MODEL).quarantined_total == 1

    # the cycle's windows are complete: every row of the good files, every feature tested
    assert len(report.windows) == 250 // WINDOW
    history = read_history(wh, MODEL)
    per_window = history.group_by("window_id").agg(pl.len(), pl.col("rows").first())
    n_features = len(driver.profile.numeric_columns)
    assert per_window.sort("window_id").rows() == [(0, n_features, WINDOW), (1, n_features, WINDOW)]
    assert history["p_value"].is_not_nan().all()
    assert driver.run_cycle(now=hour_us(3) / 1e6).quarantined == ()
    assert load_checkpoint(wh, MODEL).quarantined_total == 1


def _versioned_rows(schema: ModelSchema, n: int, start: datetime, float32: bool) -> pa.Table:
    rng = np.random.default_rng(len(schema.features))
    kind = pa.float32() if float32 else pa.float64()
    cols = {
        "ts": pa.array([start + timedelta(seconds=i) for i in range(n)], pa.timestamp("us", "UTC")),
        "request_id": pa.array([f"{uuid.uuid4().hex}-0" for _ in range(n)]),
        "replica": pa.array(["r1"] * n),
        "model_version": pa.array([schema.version] * n),
        **{f.name: pa.array(rng.normal(size=n), kind) for f in schema.features},
        "prediction": pa.array(rng.integers(0, 2, n).astype(float)),
        "score": pa.array(rng.random(n)),
    }
    return pa.table(cols)


def test_reading_across_model_versions_keeps_every_feature(tmp_path, dask_cluster):
    wh = Warehouse(tmp_path / "wh")
    v1 = ModelSchema("evo", (FeatureSpec("a"), FeatureSpec("b")), version="v1")
    v2 = ModelSchema("evo", (*v1.features, FeatureSpec("c")), version="v2")
    start = DAY + timedelta(minutes=1)
    # version 1 rows, then version 2 (a new feature c; its client sends float32 columns,
    # which the schema widens to the landing type before the writer gets them)
    for schema, offset, float32 in ((v1, 0, False), (v2, 60, True)):
        writer = LandingWriter(wh, schema, "r1", flush_rows=10**9, flush_interval=3600)
        table = _versioned_rows(schema, 60, start + timedelta(seconds=offset), float32)
        for batch in schema.conform(table).to_batches(max_chunksize=20):
            writer.extend_checked([batch])  # conformed above
            writer.flush()
        writer.close()
    # and one file from an older producer that wrote b as float32
    legacy = _versioned_rows(v1, 30, start + timedelta(seconds=120), True)
    wh.publish_table(
        legacy, f"{hour_partition('evo', hour_us(0))}/old-000000000001-0123abcd.parquet"
    )

    def check(frame: pl.DataFrame) -> None:
        assert frame.height == 150 and frame["request_id"].n_unique() == 150
        assert frame.schema["b"] == pl.Float64 and frame.schema["c"] == pl.Float64
        by_version = frame.group_by("model_version").agg(pl.col("c").null_count(), pl.len())
        assert sorted(by_version.rows()) == [("v1", 90, 90), ("v2", 0, 60)]
        assert frame["a"].null_count() == frame["b"].null_count() == 0

    check(read_landing(wh, "evo"))
    check(scan_landing(wh, "evo").collect())
    files = list_landing(wh, "evo")
    window = read_rows(wh, [RowSelection(f.path, (0, 1)) for f in files], ["a", "b", "c"])
    assert window.height == 2 * len(files) and window["c"].null_count() == 2 * 4
    compact(wh, "evo", force=True)  # the hour spans both versions: one unified file
    assert len(list_landing(wh, "evo")) == 1
    check(read_landing(wh, "evo"))

    # the analytics job tests a window spanning both versions, feature c included
    ref = pl.DataFrame({n: np.random.default_rng(1).normal(size=200) for n in "abc"})
    ref.with_columns(target=pl.lit(1.0)).write_parquet(tmp_path / "ref.parquet")
    reference = load_reference(tmp_path / "ref.parquet", "evo")
    settings = settings_for(wh.root, model_name="evo", reference_path=str(tmp_path / "ref.parquet"))
    driver = Driver(
        settings, dask_cluster, profile=build_profile(reference, monitor_prediction=False)
    )
    report = driver.run_cycle(now=hour_us(3) / 1e6)
    assert [w.spec.rows for w in report.windows] == [WINDOW]
    history = read_history(wh, "evo").filter(pl.col("feature") == "c")
    assert history["n_tested"].to_list() == [WINDOW - 60]  # rows 61-100 are version 2
    assert history["null_share"].to_list() == [0.6]
    assert np.isfinite(history["p_value"][0])
