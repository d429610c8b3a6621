"""The warehouse on a real S3 API (moto's server on loopback): the local guarantees, re-derived.

Conditional writes (412) decide every race; an upload is visible only whole; a driver killed
at each crash point restarts to the history an uninterrupted local run gives; compaction,
retention and quarantine work by copy and delete; a bad bucket or bad credentials stop each
command at start with a message and exit 2, writing nothing.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import duckdb
import httpx
import obstore as obs
import polars as pl
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from analytics import AnalyticsSettings, Driver, dask_client, load_checkpoint, read_history
from harness import MODEL, REFERENCE
from harness.landing import drain, holdout_rows, write_landing
from harness.s3 import FaultProxy, aws_env
from harness.servers import holdout_features, model_server, parse_metrics, send_rows
from ingest import CheckpointError, LandingError, Warehouse
from ingest.feed import FeedMark, poll
from ingest.maintain import RetentionPolicy, compact, retain
from ingest.maintain._lock import maintenance_lock
from ingest.paths import compaction_lock_path
from ingest.progress import hold, list_marks, mark_sealed
from ingest.reader import list_landing, read_landing

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(params=["local", "s3"])
def warehouse(request, tmp_path) -> Warehouse:
    """The same contract on both backends."""
    if request.param == "local":
        return Warehouse(tmp_path / "wh")
    return Warehouse(request.getfixturevalue("s3_url"))


def test_of_racing_conditional_writers_exactly_one_wins(warehouse):
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda i: warehouse.try_create("state/x.json", b"%d" % i), range(8)))
    assert sum(won) == 1
    _body, version = warehouse.read_versioned("state/x.json")
    with ThreadPoolExecutor(8) as pool:
        versions = list(
            pool.map(lambda i: warehouse.put_if("state/x.json", b"n%d" % i, version), range(8))
        )
    assert sum(v is not None for v in versions) == 1
    assert warehouse.put_if("state/x.json", b"late", version) is None  # stale: 412


def test_a_stale_maintenance_lock_is_broken_by_one_run_only(warehouse):
    rel = compaction_lock_path(MODEL)
    stale = {"host": "gone", "pid": 1, "since": time.time() - 7200}
    assert warehouse.try_create(rel, json.dumps(stale).encode())
    barrier, held = threading.Barrier(4), []

    def contend() -> None:
        barrier.wait()
        with maintenance_lock(warehouse, MODEL, ttl=3600) as acquired:
            held.append(acquired)
            time.sleep(0.5)  # still holding while the others try

    threads = [threading.Thread(target=contend) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(held) == [False, False, False, True]
    assert warehouse.stat(rel) is None  # released


def test_two_backfills_of_one_name_cannot_both_run(warehouse):
    with hold(warehouse, MODEL, "backfill-x", 0, ttl=60):
        again = hold(warehouse, MODEL, "backfill-x", 0, ttl=60)
        with pytest.raises(LandingError, match=r"backfill-x of model .* is running already"):
            again.__enter__()
        with hold(warehouse, MODEL, "backfill-y", 0, ttl=60):  # another name is fine
            pass
    with hold(warehouse, MODEL, "backfill-x", 0, ttl=0.001):
        time.sleep(0.01)
        with hold(warehouse, MODEL, "backfill-x", 0, ttl=60):  # an expired hold is taken over
            assert [m.consumer for m in list_marks(warehouse, MODEL)] == ["backfill-x"]
    assert list_marks(warehouse, MODEL) == []


def test_a_second_driver_takes_over_and_the_first_stops(warehouse):
    write_landing(warehouse, holdout_rows(400, seed=1), replica="r1", per_file=50)
    settings = AnalyticsSettings(
        warehouse=warehouse.url,
        reference_path=str(REFERENCE),
        window_size=100,
        max_lateness=0,
        n_workers=1,
        dashboard_address=None,
    )
    with dask_client(settings) as client:  # workers inherit this test's AWS_* variables
        first = Driver(settings, client)
        first.run_cycle(now=time.time() + 3600)
        second = Driver(settings, client)
        with pytest.raises(CheckpointError, match="took over"):
            first.run_cycle(now=time.time() + 3600)
        second.run_cycle(now=time.time() + 3600)
    history = read_history(warehouse, MODEL)
    assert history["window_id"].n_unique() == 4
    assert load_checkpoint(warehouse, MODEL).next_window_id == 4


def fill(warehouse: Warehouse) -> None:
    start = datetime(2026, 11, 30, 10, tzinfo=UTC)
    write_landing(warehouse, holdout_rows(450, seed=1), replica="r1", per_file=40, start=start)
    write_landing(
        warehouse,
        holdout_rows(450, seed=2, shift={"mean radius": 1.0}),
        replica="r2",
        start=start,
    )


@pytest.fixture(scope="module")
def landed(tmp_path_factory) -> tuple[Warehouse, pl.DataFrame]:
    """A local landing zone (request ids are random: the S3 runs copy it) and the history an
    uninterrupted local drain makes of it."""
    base = Warehouse(tmp_path_factory.mktemp("base") / "wh")
    fill(base)
    wh = Warehouse(tmp_path_factory.mktemp("local") / "wh")
    copy(base, wh)
    assert drain(wh.url) == 0
    return base, read_history(wh, MODEL).drop("computed_at")


def copy(source: Warehouse, dest: Warehouse) -> None:
    for f in source.list_files("landing"):
        dest.write_bytes(f.path, source.read_bytes(f.path))


@pytest.mark.parametrize(
    "failpoint", [None, "planned:2", "history_written:1", "history_written:3", "checkpoint_saved:2"]
)
def test_sigkill_at_each_crash_point_on_s3_gives_the_local_uninterrupted_history(
    landed, s3_url, moto, failpoint
):
    base, local_history = landed
    copy(base, Warehouse(s3_url))
    if failpoint:
        assert drain(s3_url, failpoint, **moto.env) == -signal.SIGKILL
    assert drain(s3_url, **moto.env) == 0
    got = read_history(Warehouse(s3_url), MODEL).drop("computed_at")
    assert local_history["window_id"].n_unique() == 9
    assert got.equals(local_history)
    if failpoint is None:
        readers_without_driftlake_agree(s3_url, moto, got)


def readers_without_driftlake_agree(url: str, moto, history: pl.DataFrame) -> None:
    """The docs/s3.md examples: Polars with storage_options, DuckDB over a pyarrow dataset."""
    root = f"{url}/drift/model={MODEL}"
    options = {
        "aws_endpoint_url": moto.endpoint,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "aws_region": "us-east-1",
    }
    frame = pl.scan_parquet(f"{root}/**/*.parquet", storage_options=options).collect()
    assert frame.height == history.height
    assert frame["window_id"].n_unique() == history["window_id"].n_unique()
    fs = pafs.S3FileSystem(
        access_key="testing",
        secret_key="testing",
        region="us-east-1",
        endpoint_override=moto.endpoint,
    )
    drift = ds.dataset(root.removeprefix("s3://"), filesystem=fs)  # noqa: F841 - scanned by name
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    windows = con.execute("select count(distinct window_id) from drift").fetchall()[0][0]
    assert windows == history["window_id"].n_unique()


def test_compaction_retention_and_quarantine_on_s3(s3_url):
    wh = Warehouse(s3_url)
    old = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=3)
    ids = write_landing(wh, holdout_rows(300, seed=3), start=old, per_file=20)
    ids += write_landing(wh, holdout_rows(100, seed=4), start=old + timedelta(hours=1))
    bad = list_landing(wh, MODEL)[0].path.rsplit("/", 1)[0] + "/r9-000000000001-deadbeef.parquet"
    empty = bad.replace("-deadbeef", "-0000beef")
    obs.put(wh.store, bad, b"not parquet at all")
    obs.put(wh.store, empty, b"")  # no suffix range to give: read whole, found corrupt
    batch = poll(wh, MODEL, FeedMark())  # the driver's poll moves them aside with the reason
    assert sorted(q.path for q in batch.quarantined) == sorted([bad, empty])
    assert wh.stat(bad) is None and wh.stat(empty) is None
    before = read_landing(wh, MODEL).sort("request_id")
    assert sorted(before["request_id"].to_list()) == sorted(ids)
    mark_sealed(wh, MODEL, "analytics", int((old + timedelta(hours=3)).timestamp() * 1e6))
    report = compact(wh, MODEL)
    assert report.skipped is None and report.rows == 400
    files = list_landing(wh, MODEL)
    assert all("compacted-" in f.path for f in files) and len(files) == 2
    after = read_landing(wh, MODEL).sort("request_id")
    assert after.drop("model", "date", "hour").equals(before.drop("model", "date", "hour"))
    assert any(f.path.endswith(".reason.json") for f in wh.list_files("quarantine", suffix=""))
    retain(wh, MODEL, RetentionPolicy(landing_days=1, history_days=None))
    assert list_landing(wh, MODEL) == []
    assert wh.list_files("landing") == []


def test_predictions_go_on_while_the_store_fails_and_every_row_lands_once(
    s3_url, tmp_path, monkeypatch
):
    frame = holdout_features().sample(240, with_replacement=True, seed=5)
    with FaultProxy(os.environ["AWS_ENDPOINT_URL"]) as proxy:
        for name, value in aws_env(proxy.endpoint).items():
            monkeypatch.setenv(name, value)
        with model_server(s3_url, log_dir=tmp_path, flush_interval=0.2) as server:
            sent = send_rows(server.url, frame.slice(0, 40))
            for mode, rows in (("slowdown", frame.slice(40, 100)), ("reset", frame.slice(140))):
                proxy.mode = mode
                started = time.monotonic()
                sent.request_ids += send_rows(server.url, rows).request_ids
                assert time.monotonic() - started < 20  # answered while the store was down
                time.sleep(1.0)  # several flush attempts fail
                proxy.mode = "pass"
            metrics = parse_metrics(httpx.get(f"{server.url}/metrics", timeout=5).text)
            assert metrics["driftlake_capture_flushes_failed_total"] >= 2
            assert proxy.faults_injected > 0
            wh = Warehouse(s3_url)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                landed = read_landing(wh, MODEL, columns=["request_id"])
                if landed.height >= len(sent.request_ids):
                    break
                time.sleep(0.5)
    assert sorted(landed["request_id"].to_list()) == sorted(sent.request_ids)  # each once
