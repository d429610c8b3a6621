"""Every setting of the three services is a flag, and a flag given wins over its variable."""

from __future__ import annotations

import contextlib
import io

import pytest

from analytics.__main__ import parse_settings
from analytics.settings import AnalyticsSettings
from harness.settings import field_names
from ingest.maintain.__main__ import main as ingest_main
from ingest.maintain.__main__ import parse_args as ingest_args
from ingest.maintain.settings import MaintenanceSettings
from ingest.settings_cli import settings_from_args
from serving.__main__ import main as serving_main
from serving.__main__ import parse_args as serving_args
from serving.settings import ServingSettings

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]


def help_of(parse, argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        parse(argv)
    assert exit_.value.code == 0
    return out.getvalue()


CLIS = {
    "analytics run": (parse_settings, ["run", "-h"], AnalyticsSettings),
    "analytics backfill": (parse_settings, ["backfill", "-h"], AnalyticsSettings),
    "serving": (serving_args, ["-h"], ServingSettings),
    "ingest compact": (ingest_args, ["compact", "-h"], MaintenanceSettings),
    "ingest retain": (ingest_args, ["retain", "-h"], MaintenanceSettings),
}


@pytest.mark.parametrize("cli", CLIS)
def test_every_setting_is_a_flag_with_its_variable_in_the_help(cli):
    parse, argv, cls = CLIS[cli]
    text = help_of(parse, argv)
    names = field_names(cls)
    assert len(names) >= 8
    for name in sorted(names):
        flag = "--" + name.replace("_", "-")
        assert f"{flag} " in text or f"{flag}," in text or f"{flag}\n" in text, (cli, flag)
        assert f"DRIFTLAKE_{name.upper()}" in text, (cli, name)


def test_analytics_flags_set_each_kind_of_setting_and_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("DRIFTLAKE_WINDOW_SIZE", "300")
    monkeypatch.setenv("DRIFTLAKE_ALPHA", "0.01")
    monkeypatch.setenv("DRIFTLAKE_COMPACT_GRACE", "77")
    monkeypatch.setenv("DRIFTLAKE_LANDING_RETENTION_DAYS", "9")
    args, s = parse_settings(
        [
            "run",
            "--once",
            "--alpha=0.2",  # flag over env
            "--categorical",
            "mean radius,mean area",
            "--categorical=worst area",  # comma-separated and repeated
            "--correction",
            "fdr",  # Literal
            "--drift-share",
            "0.5",  # Optional float
            "--min-statistic",
            "0.1",
            "--dashboard-address",
            "none",  # Optional: none
            "--no-monitor-prediction",  # bool
            "--warehouse",
            "/tmp/wh",  # top-level and the nested maintenance twin
            "--compact-row-group-rows",
            "20000",  # nested settings' field
            "--health-address",
            "127.0.0.1:0",
        ]
    )
    assert args.command == "once"
    assert s.alpha == 0.2 and s.window_size == 300  # flag > env; env > default
    assert s.categorical == ["mean radius", "mean area", "worst area"]
    assert (s.correction, s.drift_share, s.min_statistic) == ("fdr", 0.5, 0.1)
    assert s.dashboard_address is None and s.monitor_prediction is False
    assert s.health_address == "127.0.0.1:0" and s.interval == 2.0  # untouched default
    m = s.maintenance
    assert (m.warehouse, m.compact_row_group_rows) == ("/tmp/wh", 20000)
    assert (m.compact_grace, m.landing_retention_days) == (77.0, 9.0)  # env kept beside a flag
    monkeypatch.setenv("DRIFTLAKE_HEALTH_ADDRESS", "none")
    assert parse_settings(["run"])[1].health_address is None  # no /healthz server


def test_serving_flags_win_over_the_environment_and_keep_their_old_names(monkeypatch):
    monkeypatch.setenv("DRIFTLAKE_FLUSH_ROWS", "123")
    monkeypatch.setenv("DRIFTLAKE_MAX_BATCH_ROWS", "7")
    args = serving_args(
        [
            "--host",
            "0.0.0.0",
            "--port",
            "9001",
            "--reference",
            "ref.parquet",  # older name of --reference-path
            "--max-batch-rows",
            "50",
            "--no-capture",
            "--landing-compression",
            "zstd",
            "--model-version",
            "none",
            "--replica",
            "r1",
        ]
    )
    s = settings_from_args(ServingSettings, args)
    assert (args.host, args.port) == ("0.0.0.0", 9001)
    assert str(s.reference_path) == "ref.parquet" and s.max_batch_rows == 50
    assert s.flush_rows == 123 and s.capture is False and s.capture_process is True
    assert (s.landing_compression, s.model_version, s.replica) == ("zstd", None, "r1")


def test_ingest_flags_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("DRIFTLAKE_COMPACT_GRACE", "77")
    monkeypatch.setenv("DRIFTLAKE_HISTORY_RETENTION_DAYS", "5")
    args = ingest_args(["compact", "--grace=10", "--compact-delete-after=3", "--scheduler=none"])
    s = settings_from_args(MaintenanceSettings, args)
    assert (s.compact_grace, s.compact_delete_after, s.scheduler) == (10.0, 3.0, None)
    assert s.history_retention_days == 5.0 and s.compact_target_file_rows == 5_000_000
    args = ingest_args(["retain", "--history-retention-days", "none"])
    assert settings_from_args(MaintenanceSettings, args).history_retention_days is None


BAD = {
    "analytics": (
        lambda argv: parse_settings(["run", *argv]),
        ["--min-statistic", "0"],
        "python -m analytics: invalid settings: min_statistic: ",
    ),
    "analytics nested": (
        lambda argv: parse_settings(["run", *argv]),
        ["--compact-row-group-rows", "many"],
        "python -m analytics: invalid settings: compact_row_group_rows: ",
    ),
    "analytics health address": (
        lambda argv: parse_settings(["run", *argv]),
        ["--health-address", "8788"],
        "python -m analytics: invalid settings: health_address: ",
    ),
    "serving": (
        serving_main,
        ["--event-loop", "tornado"],
        "python -m serving: error: invalid settings: event_loop: ",
    ),
    "ingest": (
        ingest_main,
        ["retain", "--landing-retention-days", "-1"],
        "python -m ingest: error: invalid settings: landing_retention_days: ",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_value_is_one_line_naming_the_setting_and_exit_2(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing is read or written before the settings are checked
    run, argv, expected = BAD[case]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = run(argv)
        except SystemExit as exc:
            code = exc.code
    assert code == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), lines
    assert "Traceback" not in err.getvalue()
