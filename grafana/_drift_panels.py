"""The dashboard's drift panels: per-window verdicts, per-feature tests, p-values and flags."""

from __future__ import annotations

from _panel import RI, M, Panel, flag_mappings, panel, row, target


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
            "Per-feature tests, p-values and drift flags (latest window)",
            [
                target(_by_feature("driftlake_feature_p_value"), instant=True),
                target(_by_feature("driftlake_feature_statistic"), instant=True),
                target(_by_feature("driftlake_feature_drift"), instant=True),
                target(_by_feature("driftlake_feature_out_of_range_share"), instant=True),
                target(_by_feature("driftlake_feature_null_share"), instant=True),
            ],
            12,
            12,
            description="One row per feature and the test that judged it: ks for numeric "
            "features and the prediction, chi2 for categorical ones. Raw p-values; the drift "
            "flag is set after multiple-testing correction. Out of reference: share of rows "
            "beyond the reference's range, or (categorical) of a category it never had.",
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
                {
                    "matcher": {"id": "byRegexp", "options": "out of reference|missing"},
                    "properties": [{"id": "unit", "value": "percentunit"}],
                },
            ],
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True},
                        "indexByName": {"feature": 0, "test": 1},
                        "renameByName": {
                            "Value #A": "p-value",
                            "Value #B": "statistic",
                            "Value #C": "drift",
                            "Value #D": "out of reference",
                            "Value #E": "missing",
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
            [target(f'driftlake_feature_p_value{{{M}, feature="$feature"}}', "{{test}}")],
            8,
            8,
            custom={"scaleDistribution": {"type": "log", "log": 10}},
            description="Raw p-value of the selected feature per window (log scale), from "
            "its test: KS for a numeric feature, chi-squared for a categorical one.",
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
            "Out-of-reference share per feature",
            [
                target(
                    _by_feature("driftlake_feature_out_of_range_share"),
                    "{{feature}} ({{test}})",
                )
            ],
            8,
            8,
            unit="percentunit",
            description="Share of each window's rows beyond the reference's range (numeric) "
            "or holding a category the reference never had (categorical): a new category "
            "shows here the window it appears.",
        ),
        panel(
            "timeseries",
            "Drift over time",
            [
                target(f"max(driftlake_features_drifting{{{M}}})", "features drifting"),
                target(f"max(driftlake_dataset_drift{{{M}}})", "dataset drift"),
            ],
            6,
            8,
        ),
        panel(
            "timeseries",
            "Windows tested and drifted (increase)",
            [
                target(f"sum(increase(driftlake_windows_total{{{M}}}[{RI}]))", "windows"),
                target(f"sum(increase(driftlake_drifted_windows_total{{{M}}}[{RI}]))", "drifted"),
            ],
            6,
            8,
            custom={"drawStyle": "bars", "fillOpacity": 60},
        ),
        panel(
            "timeseries",
            "Rows per window",
            [target(f"max(driftlake_window_rows{{{M}}})", "rows")],
            6,
            8,
        ),
        panel(
            "timeseries",
            "Replicas contributing per window",
            [target(f"max(driftlake_window_replicas{{{M}}})", "replicas")],
            6,
            8,
            custom={"lineInterpolation": "stepAfter"},
        ),
    ]


def _by_feature(metric: str) -> str:
    """The model's per-feature gauge, one series per feature and the test that judged it."""
    return f"max by (feature, test) ({metric}{{{M}}})"
