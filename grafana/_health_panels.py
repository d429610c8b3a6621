"""The dashboard's health panels: the analytics job and the model-server replicas."""

from __future__ import annotations

from _panel import RI, M, Panel, panel, row, target

PRED = 'job="model-server", path=~".*get-prediction"'


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
