"""Settings of the analytics job, read once from ``DRIFTLAKE_*`` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest import ConfigError
from ingest.maintain.settings import MaintenanceSettings
from ingest.paths import check_name


class AnalyticsSettings(BaseSettings):
    """Everything the drift job can be told; each field is ``DRIFTLAKE_<FIELD>`` in the env."""

    model_config = SettingsConfigDict(env_prefix="DRIFTLAKE_", extra="ignore")

    warehouse: str = Field(
        "./warehouse",
        description="Warehouse root: a path, file:// URL or s3://bucket/prefix (endpoint and "
        "credentials from the standard AWS_* environment).",
    )
    model_name: str = Field("breast_cancer", description="Model whose landing rows are tested.")
    reference_path: str = Field("reference.parquet", description="Reference (training) data.")
    label: str | None = Field("target", description="Reference label column; not a feature.")
    categorical: list[str] = Field(
        default_factory=list,
        description="Reference columns to test as categorical (chi-squared) even if numeric; "
        "string columns always are. Env: a JSON list.",
    )
    window_size: int = Field(200, ge=2, description="Rows per count-based tumbling window.")
    window_seconds: float | None = Field(
        None,
        gt=0,
        description="Time-based tumbling windows of this many seconds instead of counts.",
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="Family-wise false-alarm rate.")
    correction: Literal["bonferroni", "fdr", "none"] = Field(
        "bonferroni", description="Multiple-testing correction over a window's features."
    )
    drift_share: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Dataset drift when this share of features drift (default: any one).",
    )
    min_statistic: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Minimum KS statistic (effect size) for a feature to count as drifted.",
    )
    ks_method: Literal["auto", "exact", "asymp"] = Field(
        "auto", description="p-value method of the KS test (as scipy.stats.ks_2samp)."
    )
    numeric_test: str = Field(
        "ks",
        description="Registered stattest for numeric columns and the prediction "
        "(analytics/stattests/).",
    )
    categorical_test: str = Field(
        "chi2", description="Registered stattest for categorical columns (analytics/stattests/)."
    )
    monitor_prediction: bool = Field(
        True, description="Test the model's prediction column against the reference label."
    )
    interval: float = Field(2.0, gt=0, description="Seconds between analytics cycles.")
    max_lateness: float = Field(
        10.0, ge=0, description="Rows older than this many seconds are final regardless."
    )
    seal_after: float = Field(
        3600.0, ge=0, description="An hour partition is sealed this long after it closes."
    )
    max_windows_per_cycle: int = Field(
        0, ge=0, description="Windows tested per cycle at most (0 = all that are closed)."
    )
    max_files_per_cycle: int = Field(
        1_000,
        ge=0,
        description="New landing files whose keys one cycle reads at most (0 = all): a "
        "driver catching up on a backlog plans it in steps, oldest hour first.",
    )
    max_rows_per_cycle: int = Field(
        1_000_000,
        ge=0,
        description="A cycle reads no further landing file once the new files it read hold "
        "this many rows (0 = no bound); with max_files_per_cycle it bounds a cycle's "
        "planning time and memory.",
    )
    batch_rows: int = Field(
        20_000,
        ge=1,
        description="Rows one Dask task tests, in consecutive windows (fewer when that leaves "
        "a worker thread idle): a task pays its fixed cost once for all its windows.",
    )
    scheduler: str | None = Field(
        None, description="Dask scheduler address; None starts a local cluster."
    )
    n_workers: int = Field(2, ge=1, description="Workers of the local cluster.")
    threads_per_worker: int = Field(1, ge=1, description="Threads per local-cluster worker.")
    polars_max_threads: int = Field(1, ge=1, description="Polars threads inside each worker.")
    dashboard_address: str | None = Field(
        "127.0.0.1:8787", description="Local cluster's dashboard address; None disables it."
    )
    pushgateway: str | None = Field(None, description="Pushgateway URL; None disables pushing.")
    push_timeout: float = Field(3.0, gt=0, description="Seconds before a push gives up.")
    compact_every: float = Field(
        0.0,
        ge=0,
        description="Seconds between compaction + retention runs of the loop (on the Dask "
        "cluster); 0 never runs them here (use `python -m ingest compact`).",
    )
    health_address: str | None = Field(
        "127.0.0.1:8788",
        description="host:port where the `run` loop serves /healthz and /metrics; none "
        "disables them.",
    )
    health_max_age: float | None = Field(
        None,
        gt=0,
        description="/healthz answers 503 when the last successful cycle is older than this "
        "many seconds; none: the larger of 3 x interval and 60.",
    )
    maintenance: MaintenanceSettings = Field(
        default_factory=MaintenanceSettings,
        description="Compaction and retention policy (DRIFTLAKE_COMPACT_*, *_RETENTION_DAYS).",
    )

    @field_validator("model_name")
    @classmethod
    def _safe_model_name(cls, value: str) -> str:
        # it becomes warehouse paths and the Pushgateway's grouping key: no "/", "..", "\n"
        try:
            return check_name("model", value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("health_address", mode="before")
    @classmethod
    def _health_address(cls, value: object) -> object:
        # DRIFTLAKE_HEALTH_ADDRESS=none (or empty) turns the endpoint off
        if not isinstance(value, str) or value.strip().lower() in ("", "none"):
            return None if isinstance(value, str) else value
        host, sep, port = value.strip().rpartition(":")
        if not sep or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"expected host:port such as 127.0.0.1:8788, or none; got {value!r}")
        return f"{host.strip('[]') or '0.0.0.0'}:{int(port)}"
