"""Killing the driver (SIGKILL) anywhere in a cycle changes nothing in the drift history."""

from __future__ import annotations

import shutil
import signal

import polars as pl
import pytest

from analytics import load_checkpoint, read_history
from harness import MODEL
from harness.landing import drain, holdout_rows, write_landing
from ingest import Warehouse

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def comparable(wh) -> pl.DataFrame:
    return read_history(Warehouse(wh), MODEL).drop("computed_at")


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    base = tmp_path_factory.mktemp("base") / "wh"
    wh = Warehouse(base)
    write_landing(wh, holdout_rows(450, seed=1), replica="r1", per_file=40)
    write_landing(wh, holdout_rows(450, seed=2, shift={"mean radius": 1.0}), replica="r2")
    reference = tmp_path_factory.mktemp("uninterrupted") / "wh"
    shutil.copytree(base, reference)
    assert drain(reference) == 0
    return base, reference


@pytest.mark.parametrize(
    "failpoint", ["planned:2", "history_written:1", "history_written:3", "checkpoint_saved:2"]
)
def test_restart_after_sigkill_gives_the_uninterrupted_history(landing, tmp_path, failpoint):
    base, reference = landing
    wh = tmp_path / "wh"
    shutil.copytree(base, wh)
    assert drain(wh, failpoint) == -signal.SIGKILL
    assert drain(wh) == 0
    expected = comparable(reference)
    assert expected["window_id"].n_unique() == 900 // 100
    assert comparable(wh).equals(expected)
    got, want = load_checkpoint(Warehouse(wh), MODEL), load_checkpoint(Warehouse(reference), MODEL)
    assert (got.windows_total, got.rows_tested_total, got.next_window_id) == (
        want.windows_total,
        want.rows_tested_total,
        want.next_window_id,
    )
