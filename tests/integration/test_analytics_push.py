"""The drift job pushes to a real Pushgateway, and keeps going when it is down."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from analytics import AnalyticsSettings, Driver, dask_client, read_history
from harness import MODEL, REFERENCE
from harness.landing import holdout_rows, write_landing
from harness.procs import free_port
from harness.prometheus import pushgateway_running
from ingest import Warehouse

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SHIFT = {"mean radius": 1.5, "worst area": 1.5}


def settings_for(wh, pushgateway: str) -> AnalyticsSettings:
    return AnalyticsSettings(
        warehouse=str(wh),
        reference_path=str(REFERENCE),
        window_size=200,
        n_workers=1,
        dashboard_address=None,
        pushgateway=pushgateway,
        push_timeout=2.0,
    )


def gateway_series(url: str, name: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def test_push_replaces_the_model_group_with_the_latest_window(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    write_landing(wh, holdout_rows(400, shift=SHIFT))
    with (
        pushgateway_running(tmp_path) as gw,
        dask_client(settings_for(tmp_path / "wh", gw.url)) as client,
    ):
        driver = Driver(settings_for(tmp_path / "wh", gw.url), client)
        report = driver.run_cycle(now=time.time() + 3600)
        assert report.pushed is True and len(report.windows) == 2
        drift = gateway_series(gw.url, "driftlake_dataset_drift")
        assert list(drift.values()) == [1.0], drift
        (key,) = drift
        assert 'job="driftlake_analytics"' in key and f'model="{MODEL}"' in key
        pvals = gateway_series(gw.url, "driftlake_feature_p_value")
        assert len(pvals) == 31  # 30 features + the prediction column
        flags = gateway_series(gw.url, "driftlake_feature_drift")
        flagged = {k.split('feature="')[1].split('"')[0] for k, v in flags.items() if v == 1.0}
        assert {"mean radius", "worst area"} <= flagged
        assert list(gateway_series(gw.url, "driftlake_windows_total").values()) == [2.0]


def test_refused_pushgateway_never_stops_the_cycle(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    write_landing(wh, holdout_rows(400))
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with dask_client(settings_for(tmp_path / "wh", dead)) as client:
        driver = Driver(settings_for(tmp_path / "wh", dead), client)
        report = driver.run_cycle(now=time.time() + 3600)
        assert report.pushed is False and len(report.windows) == 2
        assert driver.pusher is not None and driver.pusher.failures_total == 1
    history = read_history(wh, MODEL)
    assert history["window_id"].unique().sort().to_list() == [0, 1]
    assert history.height == 2 * 31


def test_a_failing_cycle_is_counted_and_pushed_and_the_loop_goes_on(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    write_landing(wh, holdout_rows(200))
    model_dir = tmp_path / "wh" / "landing" / f"model={MODEL}"
    moved = tmp_path / "moved"
    model_dir.rename(moved)
    model_dir.write_text("not a directory: every listing of this model fails")
    stop = threading.Event()
    with (
        pushgateway_running(tmp_path) as gw,
        dask_client(settings_for(tmp_path / "wh", gw.url)) as client,
    ):
        settings = settings_for(tmp_path / "wh", gw.url).model_copy(update={"interval": 0.2})
        driver = Driver(settings, client)
        loop = threading.Thread(target=driver.run_forever, args=(stop,))
        loop.start()
        try:
            deadline = time.monotonic() + 60
            while not gateway_series(gw.url, "driftlake_cycle_errors_total"):
                assert time.monotonic() < deadline, "no failure was pushed"
                time.sleep(0.1)
            assert max(gateway_series(gw.url, "driftlake_cycle_errors_total").values()) >= 1
            model_dir.unlink()  # the landing zone is back: the same loop tests the window
            moved.rename(model_dir)
            while driver.checkpoint.windows_total < 1:
                assert time.monotonic() < deadline, "the loop did not recover"
                time.sleep(0.1)
        finally:
            stop.set()
            loop.join(30)
    assert not loop.is_alive() and driver.cycle_errors >= 1
