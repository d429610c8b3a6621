"""Build grafana/dashboards/driftlake.json, the provisioned driftlake dashboard.

Edit the panels here, then ``uv run python grafana/build_dashboard.py`` and commit both files;
``--check`` exits 1 when the committed JSON is not what this script builds (a test runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards" / "driftlake.json"
DS = {"type": "prometheus", "uid": "prometheus"}
M = 'model="$model"'
PRED = 'job="model-server", path=~".*get-prediction"'
RI = "$__rate_interval"

Panel = dict[str, Any]


def target(expr: str, legend: str = "", *, instant: bool = False) -> dict[str, Any]:
    t: dict[str, Any] = {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto"}
    if instant:
        t |= {"instant": True, "range": False, "format": "table"}
    else:
        t |= {"instant": False, "range": True}
    return t


def panel(
    kind: str,
    title: str,
    targets: list[dict[str, Any]],
    w: int,
    h: int,
    *,
    unit: str | None = None,
    description: str = "",
    mappings: list[dict[str, Any]] | None = None,
    thresholds: list[tuple[float | None, str]] | None = None,
    options: dict[str, Any] | None = None,
    custom: dict[str, Any] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    transformations: list[dict[str, Any]] | None = None,
    no_value: str | None = None,
) -> Panel:
    for ref, t in zip("ABCDEFGH", targets, strict=False):
        t["refId"] = ref
    defaults: dict[str, Any] = {}
    if unit:
        defaults["unit"] = unit
    if mappings:
        defaults["mappings"] = mappings
    if thresholds:
        steps = [{"color": c, "value": v} for v, c in thresholds]
        defaults["thresholds"] = {"mode": "absolute", "steps": steps}
    if custom:
        defaults["custom"] = custom
    if no_value:
        defaults["noValue"] = no_value
    p: Panel = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"w": w, "h": h},
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
    }
    if transformations:
        p["transformations"] = transformations
    return p


def flag_mappings(off: str, on: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "value",
            "options": {
                "0": {"text": off, "color": "green", "index": 0},
                "1": {"text": on, "color": "red", "index": 1},
            },
        }
    ]


def row(title: str) -> Panel:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"w": 24}}


def drift_panels() -> list[Panel]:
    stat = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"}
    return [
        row("Drift: $model"),
        panel(
            "stat",
            "Dataset drift (latest window)",
            [target(f"max(driftlake_dataset_drift{{{M}}})")],
            4,
            4,
            mappings=flag_mappings("no drift", "DRIFT"),
            options=stat,
        ),
        panel(
            "stat",
            "Features drifting",
            [target(f"max(driftlake_features_drifting{{{M}}})")],
            4,
            4,
            thresholds=[(None, "green"), (1, "red")],
            options=stat,
        ),
        panel(
            "stat",
            "Last drift",
            [target(f"max(driftlake_last_drift_timestamp_seconds{{{M}}} > 0) * 1000")],
            4,
            4,
            unit="dateTimeFromNow",
            no_value="never",
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "none"},
        ),
        panel(
            "stat",
            "Since last analytics cycle",
            [target(f"time() - max(driftlake_last_success_timestamp_seconds{{{M}}})")],
            4,
            4,
            unit="s",
            thresholds=[(None, "green"), (30, "red")],
            description="Alert DriftJobStale fires above 30 s (3 analytics intervals).",
            options=stat,
        ),
        panel(
            "stat",
            "Windows tested",
            [target(f"max(driftlake_windows_total{{{M}}})")],
            4,
            4,
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "none"},
        ),
        panel(
            "stat",
            "Drifted windows",
            [target(f"max(driftlake_drifted_windows_total{{{M}}})")],
            4,
            4,
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "none"},
        ),
        panel(
            "table",
            "Per-feature p-values and drift flags (latest window)",
            [
                target(f"max by (feature) (driftlake_feature_p_value{{{M}}})", instant=True),
                target(f"max by (feature) (driftlake_feature_statistic{{{M}}})", instant=True),
                target(f"max by (feature) (driftlake_feature_drift{{{M}}})", instant=True),
            ],
            12,
            12,
            description="Raw p-values; the drift flag is set after multiple-testing correction.",
            options={"sortBy": [{"displayName": "p-value", "desc": False}], "showHeader": True},
            overrides=[
                {
                    "matcher": {"id": "byName", "options": "drift"},
                    "properties": [
                        {"id": "mappings", "value": flag_mappings("no", "DRIFT")},
                        {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                    ],
                },
                {
                    "matcher": {"id": "byName", "options": "p-value"},
                    "properties": [{"id": "decimals", "value": 6}],
                },
            ],
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True},
                        "renameByName": {
                            "Value #A": "p-value",
                            "Value #B": "statistic",
                            "Value #C": "drift",
                        },
                    },
                },
            ],
        ),
        panel(
            "state-timeline",
            "Drift flags per feature",
            [target(f"max by (feature) (driftlake_feature_drift{{{M}}})", "{{feature}}")],
            12,
            12,
            mappings=flag_mappings("ok", "drift"),
            options={"showValue": "never", "legend": {"showLegend": False}},
        ),
        panel(
            "timeseries",
            "p-value: $feature",
            [target(f'driftlake_feature_p_value{{{M}, feature="$feature"}}', "p-value")],
            8,
            8,
            custom={"scaleDistribution": {"type": "log", "log": 10}},
            description="Raw KS p-value of the selected feature per window (log scale).",
        ),
        panel(
            "timeseries",
            "Statistic: $feature",
            [target(f'driftlake_feature_statistic{{{M}, feature="$feature"}}', "{{test}}")],
            8,
            8,
        ),
        panel(
            "timeseries",
            "Drift over time",
            [
                target(f"max(driftlake_features_drifting{{{M}}})", "features drifting"),
                target(f"max(driftlake_dataset_drift{{{M}}})", "dataset drift"),
            ],
            8,
            8,
        ),
        panel(
            "timeseries",
            "Windows tested and drifted (increase)",
            [
                target(f"sum(increase(driftlake_windows_total{{{M}}}[{RI}]))", "windows"),
                target(f"sum(increase(driftlake_drifted_windows_total{{{M}}}[{RI}]))", "drifted"),
            ],
            8,
            8,
            custom={"drawStyle": "bars", "fillOpacity": 60},
        ),
        panel(
            "timeseries",
            "Rows per window",
            [target(f"max(driftlake_window_rows{{{M}}})", "rows")],
            8,
            8,
        ),
        panel(
            "timeseries",
            "Replicas contributing per window",
            [target(f"max(driftlake_window_replicas{{{M}}})", "replicas")],
            8,
            8,
            custom={"lineInterpolation": "stepAfter"},
        ),
    ]


def analytics_panels() -> list[Panel]:
    return [
        row("Analytics job"),
        panel(
            "timeseries",
            "Analytics cycle time",
            [target(f"max(driftlake_cycle_duration_seconds{{{M}}})", "cycle")],
            8,
            8,
            unit="s",
        ),
        panel(
            "timeseries",
            "Freshness",
            [
                target(f"max(driftlake_landing_lag_seconds{{{M}}})", "landing lag"),
                target(
                    f"time() - max(driftlake_last_success_timestamp_seconds{{{M}}})",
                    "since last successful cycle",
                ),
                target(
                    f'time() - max(push_time_seconds{{job="driftlake_analytics", {M}}})',
                    "since last push",
                ),
            ],
            8,
            8,
            unit="s",
        ),
        panel(
            "timeseries",
            "Analytics cycle errors (increase)",
            [target(f"sum(increase(driftlake_cycle_errors_total{{{M}}}[{RI}]))", "errors")],
            8,
            8,
            custom={"drawStyle": "bars", "fillOpacity": 60},
        ),
    ]


def serving_panels() -> list[Panel]:
    q = f"rate(driftlake_http_request_duration_seconds_bucket{{{PRED}}}[{RI}])"
    return [
        row("Serving (all model-server replicas)"),
        panel(
            "stat",
            "Replicas up",
            [target('count(up{job="model-server"} == 1)')],
            4,
            8,
            thresholds=[(None, "red"), (1, "green")],
            options={"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"},
        ),
        panel(
            "timeseries",
            "Requests/s by replica",
            [
                target(
                    f"sum by (instance) (rate(driftlake_http_requests_total{{{PRED}}}[{RI}]))",
                    "{{instance}}",
                ),
                target(f"sum(rate(driftlake_http_requests_total{{{PRED}}}[{RI}]))", "total"),
            ],
            10,
            8,
            unit="reqps",
        ),
        panel(
            "timeseries",
            "Latency p50 / p99",
            [
                target(f"histogram_quantile(0.5, sum by (le) ({q}))", "p50"),
                target(f"histogram_quantile(0.99, sum by (le) ({q}))", "p99"),
            ],
            10,
            8,
            unit="s",
        ),
        panel(
            "timeseries",
            "5xx errors",
            [
                target(
                    f'(sum(rate(driftlake_http_requests_total{{{PRED}, status=~"5.."}}[{RI}]))'
                    " or vector(0))"
                    f" / sum(rate(driftlake_http_requests_total{{{PRED}}}[{RI}]))",
                    "5xx share",
                ),
            ],
            8,
            8,
            unit="percentunit",
            description="Alert ModelServerErrorRate fires above 5% for 2 minutes.",
        ),
        panel(
            "timeseries",
            "Rows/s: predicted, captured, flushed",
            [
                target(f"sum(rate(driftlake_prediction_rows_total[{RI}]))", "predicted"),
                target(f"sum(rate(driftlake_capture_rows_total[{RI}]))", "captured"),
                target(f"sum(rate(driftlake_capture_flushed_rows_total[{RI}]))", "flushed"),
            ],
            8,
            8,
        ),
        panel(
            "timeseries",
            "Dropped rows and failed flushes (increase)",
            [
                target(
                    f"sum by (instance) (increase(driftlake_capture_dropped_rows_total[{RI}]))",
                    "dropped {{instance}}",
                ),
                target(
                    f"sum by (instance) (increase(driftlake_capture_flushes_failed_total[{RI}]))",
                    "failed flushes {{instance}}",
                ),
            ],
            8,
            8,
            custom={"drawStyle": "bars", "fillOpacity": 60},
        ),
        panel(
            "timeseries",
            "Capture buffer rows",
            [target("sum by (instance) (driftlake_capture_buffer_rows)", "{{instance}}")],
            8,
            8,
        ),
        panel(
            "timeseries",
            "Oldest unflushed row age",
            [
                target(
                    "max by (instance) (driftlake_capture_oldest_row_age_seconds)",
                    "{{instance}}",
                )
            ],
            8,
            8,
            unit="s",
        ),
        panel(
            "timeseries",
            "Last flush duration",
            [
                target(
                    "max by (instance) (driftlake_capture_last_flush_duration_seconds)",
                    "{{instance}}",
                )
            ],
            8,
            8,
            unit="s",
        ),
        panel(
            "table",
            "Replicas",
            [
                target(
                    "max by (instance, replica, model, model_version) (driftlake_model_info)",
                    instant=True,
                )
            ],
            24,
            6,
            transformations=[
                {"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}
            ],
        ),
    ]


def layout(panels: list[Panel]) -> list[Panel]:
    """Give every panel an id and a grid position, filling rows of 24 columns left to right."""
    x = y = row_h = 0
    for pid, p in enumerate(panels, start=1):
        p["id"] = pid
        w, h = p["gridPos"]["w"], p["gridPos"].get("h", 1)
        if p["type"] == "row" or x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        x, row_h = x + w, max(row_h, h)
        if p["type"] == "row":
            x, y, row_h = 0, y + 1, 0
    return panels


def variable(name: str, query: str, label: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": query,
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "includeAll": False,
        "multi": False,
        "current": {},
        "options": [],
        "hide": 0,
    }


def build() -> dict[str, Any]:
    return {
        "uid": "driftlake",
        "title": "driftlake: live data drift",
        "description": "Per-window drift over all replicas, the analytics job, and serving.",
        "tags": ["driftlake", "drift", "ml"],
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "graphTooltip": 1,
        "refresh": "5s",
        "time": {"from": "now-15m", "to": "now"},
        "timezone": "browser",
        "templating": {
            "list": [
                variable("model", "label_values(driftlake_dataset_drift, model)", "Model"),
                variable(
                    "feature",
                    'label_values(driftlake_feature_p_value{model="$model"}, feature)',
                    "Feature",
                ),
            ]
        },
        "annotations": {
            "list": [
                {
                    "name": "Dataset drift",
                    "datasource": DS,
                    "enable": True,
                    "iconColor": "red",
                    "expr": f"max(driftlake_dataset_drift{{{M}}}) == 1",
                    "step": "10s",
                    "titleFormat": "dataset drift",
                }
            ]
        },
        "panels": layout(drift_panels() + analytics_panels() + serving_panels()),
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the JSON is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run `uv run python {__file__}`", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
