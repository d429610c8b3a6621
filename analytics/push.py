"""Pushing a model's latest drift state to a Prometheus Pushgateway (PUT per model group)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import push_to_gateway
from prometheus_client.registry import Collector

from analytics.detect import WindowResult

log = logging.getLogger("driftlake.analytics.push")
JOB = "driftlake_analytics"


@dataclass(frozen=True)
class CycleState:
    """Job-level figures pushed with every group (counters come from the checkpoint)."""

    windows_total: int
    drifted_windows_total: int
    rows_tested_total: int
    late_rows_total: int
    cycle_errors_total: int
    quarantined_total: int
    last_drift_us: int | None
    cycle_seconds: float
    landing_lag_seconds: float


class _GroupCollector(Collector):
    """Yields one push group's metric families from already-computed values."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def build_registry(model: str, last: WindowResult | None, state: CycleState) -> CollectorRegistry:
    """Return a private registry holding the whole group: the latest window and the job state.

    The job's counters are exposed as real counters whose values come from the checkpoint:
    every PUT replaces the group, and the checkpoint is what survives restarts.
    """
    fams: list[Metric] = []

    def counter(name: str, doc: str, value: float) -> None:
        fams.append(CounterMetricFamily(name, doc, value=value))

    def gauge(name: str, doc: str, value: float) -> None:
        fams.append(GaugeMetricFamily(name, doc, value=value))

    counter("driftlake_windows", "Windows tested since the job began.", state.windows_total)
    counter(
        "driftlake_drifted_windows",
        "Windows with dataset drift since the job began.",
        state.drifted_windows_total,
    )
    counter("driftlake_rows_tested", "Rows tested in closed windows.", state.rows_tested_total)
    counter("driftlake_late_rows", "Rows that arrived after their window.", state.late_rows_total)
    counter("driftlake_cycle_errors", "Analytics cycles that failed.", state.cycle_errors_total)
    counter(
        "driftlake_quarantined_files", "Landing files moved to quarantine.", state.quarantined_total
    )
    gauge("driftlake_cycle_duration_seconds", "Duration of the last cycle.", state.cycle_seconds)
    gauge(
        "driftlake_landing_lag_seconds",
        "Now minus the watermark (event time up to which rows are final).",
        state.landing_lag_seconds,
    )
    gauge("driftlake_last_success_timestamp_seconds", "When the last cycle completed.", time.time())
    if state.last_drift_us is not None:
        gauge(
            "driftlake_last_drift_timestamp_seconds",
            "End time of the last window with dataset drift.",
            state.last_drift_us / 1e6,
        )
    if last is not None:
        spec = last.spec
        gauge("driftlake_window_rows", "Rows in the last window.", spec.rows)
        gauge(
            "driftlake_window_replicas",
            "Replicas contributing to the last window.",
            len(spec.replicas),
        )
        gauge(
            "driftlake_window_end_timestamp_seconds",
            "Event time of the last row of the last window.",
            spec.end_us / 1e6,
        )
        gauge("driftlake_dataset_drift", "1 if the last window drifted.", last.dataset_drift)
        gauge(
            "driftlake_features_drifting",
            "Features drifting in the last window.",
            last.features_drifting,
        )
        fams += _feature_families(last)
    reg = CollectorRegistry()
    reg.register(_GroupCollector(fams))
    return reg


# Per-feature gauges of the last window: (name, help, WindowResult attribute). Every one is
# labelled by feature and by the test that judged it (ks, chi2, ...), so numeric and
# categorical features are told apart in one query; both labels are bounded by the schema.
_PER_FEATURE = (
    ("driftlake_feature_p_value", "Raw p-value per feature.", "p_value"),
    ("driftlake_feature_statistic", "Test statistic per feature.", "statistic"),
    ("driftlake_feature_drift", "1 if the feature drifted.", "drifted"),
    (
        "driftlake_feature_null_share",
        "Share of the last window's rows missing the feature.",
        "null_share",
    ),
    (
        "driftlake_feature_out_of_range_share",
        "Share of the last window's rows outside the reference: beyond its range (numeric) "
        "or a category it never had (categorical).",
        "out_of_range_share",
    ),
)


def _feature_families(last: WindowResult) -> list[Metric]:
    """One gauge family per entry of :data:`_PER_FEATURE`, a series per feature."""
    fams = []
    for name, doc, attr in _PER_FEATURE:
        values = getattr(last, attr)
        fam = GaugeMetricFamily(name, doc, labels=["feature", "test"])
        for feature, test, value in zip(last.features, last.tests, values, strict=True):
            fam.add_metric([feature, test], float(value))
        fams.append(fam)
    return fams


class Pusher:
    """Pushes to one Pushgateway; logs once per state change and counts failures."""

    def __init__(self, url: str, timeout: float = 3.0) -> None:
        self.url = url
        self.timeout = timeout
        self.failures_total = 0
        self._down = False

    def push(self, model: str, last: WindowResult | None, state: CycleState) -> bool:
        """PUT the model's group; True if the Pushgateway took it."""
        reg = build_registry(model, last, state)
        try:
            push_to_gateway(
                self.url,
                job=JOB,
                registry=reg,
                grouping_key={"model": model},
                timeout=self.timeout,
            )
        except OSError as exc:
            self.failures_total += 1
            if not self._down:
                self._down = True
                log.warning(
                    "event=pushgateway_down url=%s reason=%s action=retry_next_cycle",
                    self.url,
                    exc,
                )
            return False
        if self._down:
            self._down = False
            log.info("event=pushgateway_up url=%s", self.url)
        return True
