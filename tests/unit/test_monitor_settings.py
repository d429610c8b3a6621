"""The capture library's configuration: its settings from the environment and flags, the
schema it reads from a reference, and the clear refusal of every unusable value."""

from __future__ import annotations

import argparse
import datetime as dt
import decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftlake import ConfigError, Monitor, MonitorSettings, SchemaError, schema_of_reference
from ingest.reference import load_reference
from ingest.settings_cli import add_settings_flags, settings_from_args

pytestmark = pytest.mark.unit

FEATURES = {"age": "numeric", "plan": "categorical"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("DRIFTLAKE_"):
            monkeypatch.delenv(name)


def test_from_settings_reads_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DRIFTLAKE_MODEL_NAME", "churn")
    monkeypatch.setenv("DRIFTLAKE_WAREHOUSE", str(tmp_path / "wh"))
    monkeypatch.setenv("DRIFTLAKE_FEATURES", '{"age": "numeric", "plan": "categorical"}')
    monkeypatch.setenv("DRIFTLAKE_WRITER", "thread")
    monkeypatch.setenv("DRIFTLAKE_REPLICA", "pod-7")
    monkeypatch.setenv("DRIFTLAKE_MODEL_VERSION", "2026.1")
    monitor = Monitor.from_settings()
    assert (monitor.model, monitor.replica, monitor.model_version) == ("churn", "pod-7", "2026.1")
    assert [(f.name, f.kind) for f in monitor.schema.features] == list(FEATURES.items())
    assert monitor.writer_kind == "thread"
    assert (tmp_path / "wh").is_dir()


def test_the_constructor_ignores_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DRIFTLAKE_REPLICA", "from-env")
    monkeypatch.setenv("DRIFTLAKE_FLUSH_ROWS", "7")
    monitor = Monitor("m", tmp_path, features=FEATURES, writer="thread")
    assert monitor.replica != "from-env" and monitor.settings.flush_rows == 50_000


def test_every_setting_is_a_flag():
    parser = argparse.ArgumentParser()
    add_settings_flags(parser, MonitorSettings)
    args = parser.parse_args(
        ["--features", "age:numeric, plan:categorical", "--writer", "thread", "--flush-rows", "9"]
    )
    settings = settings_from_args(MonitorSettings, args)
    assert settings.features == FEATURES
    assert (settings.writer, settings.flush_rows) == ("thread", 9)
    assert settings_from_args(
        MonitorSettings, parser.parse_args(["--features", '{"a": "numeric"}'])
    ).features == {"a": "numeric"}


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"model": "../etc"}, ConfigError, "model name '../etc'"),
        ({"model": "churn\n"}, ConfigError, "model name"),
        ({"replica": "a/b"}, ConfigError, "replica name 'a/b'"),
        ({"model_version": "v 1"}, ConfigError, "model version name"),
        ({"writer": "fast"}, ConfigError, "writer"),
        ({"flush_interval": 0}, ConfigError, "flush_interval"),
        ({"spool_rows": 10}, ConfigError, "spool_rows"),
        ({"features": {"age": "number"}}, ConfigError, "features.age"),
        ({"features": None}, ConfigError, "neither"),
        ({"reference": "r.parquet"}, ConfigError, "both"),
        ({"warehouse": "http://example.com/wh"}, ConfigError, "not supported"),
        ({"features": {"ts": "numeric"}}, SchemaError, "clash"),
        ({"features": None, "reference": "missing.parquet"}, SchemaError, "missing.parquet"),
    ],
)
def test_unusable_values_are_refused_by_name(tmp_path, kwargs, error, message):
    given = {"model": "m", "warehouse": tmp_path, "features": FEATURES, "writer": "thread"}
    with pytest.raises(error, match=message):
        Monitor(**{**given, **kwargs})


def test_an_unusable_variable_is_named(monkeypatch):
    monkeypatch.setenv("DRIFTLAKE_FLUSH_ROWS", "-1")
    with pytest.raises(ConfigError, match="flush_rows"):
        Monitor.from_settings()


def test_reference_schema_matches_what_the_analytics_job_reads(tmp_path):
    table = pa.table(
        {
            "i": pa.array([1, 2], pa.int32()),
            "f": pa.array([1.5, None], pa.float32()),
            "d": pa.array([decimal.Decimal("1.5"), None], pa.decimal128(5, 2)),
            "s": ["a", "b"],
            "cat": pa.array(["x", "y"]).dictionary_encode(),
            "b": [True, False],
            "day": [dt.date(2026, 1, 1), None],
            "target": [0, 1],
        }
    )
    path = tmp_path / "reference.parquet"
    pq.write_table(table, path)
    oracle = load_reference(path, "m", label="target").schema.features
    assert schema_of_reference(path, "m", label="target") == oracle
    assert [f.kind for f in oracle] == ["numeric"] * 3 + ["categorical"] * 4
