"""The model server's settings: one pydantic-settings class, read from the environment once."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest import ConfigError
from ingest.paths import check_name


def default_replica() -> str:
    """Return ``<hostname>-<pid>`` reduced to the characters a replica name may hold."""
    raw = f"{socket.gethostname()[:80]}-{os.getpid()}"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).lstrip(".-")
    return name[:100] or f"replica-{os.getpid()}"


class ServingSettings(BaseSettings):
    """Everything one model-server replica needs, from ``DRIFTLAKE_*`` variables or arguments.

    Arguments given to the constructor win over the environment; the app gets an instance
    passed in and never reads ``os.environ`` itself.

    Example
    -------
    >>> ServingSettings(replica="r1", capture=False).flush_rows
    50000
    """

    model_config = SettingsConfigDict(
        env_prefix="DRIFTLAKE_", extra="forbid", protected_namespaces=(), frozen=True
    )

    model_name: str = Field(
        "breast_cancer",
        description="Model name: the landing partition model=<name> and the `model` metric "
        "label. Default: breast_cancer.",
    )
    reference_path: Path = Field(
        Path("reference.parquet"),
        description="Reference Parquet file: the feature columns (and the label) the model "
        "was trained on; defines the request and landing schema. Default: reference.parquet.",
    )
    label: str | None = Field(
        "target",
        description="Label column of the reference file (not a feature). Default: target.",
    )
    model_path: Path | None = Field(
        None,
        description="A pickled or joblib model to serve: a fitted scikit-learn estimator or "
        "Pipeline, or any object with the scikit-learn API (predict, optionally "
        "predict_proba), such as LightGBM's. Exclusive with MODEL. Default: None (and MODEL "
        "None), which trains a default model on the reference at first start and caches it "
        "under <warehouse>/_models/: StandardScaler+LogisticRegression, or for a reference "
        "with categorical (string) features a ColumnTransformer of StandardScaler and "
        "OneHotEncoder before LogisticRegression.",
    )
    model: str | None = Field(
        None,
        description="A model to serve named by import path, 'package.module:name' (e.g. "
        "mypkg.scoring:predict): a fitted object with predict (optionally predict_proba), or "
        "a function taking the rows and returning one label or number per row. Imported from "
        "the server's working directory and PYTHONPATH. Exclusive with MODEL_PATH. "
        "Default: None.",
    )
    model_input: Literal["auto", "numpy", "pandas", "polars", "arrow"] = Field(
        "auto",
        description="What the model is given the rows as, columns named and in the model's "
        "order: numpy (a float64 array; numeric features only), pandas (a DataFrame, "
        "categorical features of category dtype; needs pandas installed), polars (a "
        "DataFrame, categorical features as strings) or arrow (a pyarrow Table). auto: the "
        "type annotation of the first parameter of the model's function (or of its "
        "predict) if it is one of those, else numpy for a reference of numeric features "
        "and polars for one with categorical features. Default: auto.",
    )
    model_version: str | None = Field(
        None,
        description="Version label of the model. Default: None, which uses the first 12 hex "
        "digits of the sha256 of the model file (of the cached default model's key; of the "
        "import path and its module's source for MODEL).",
    )
    warehouse: str = Field(
        "./warehouse",
        description="Warehouse root the landing zone lives in: a path, file:// URL or "
        "s3://bucket/prefix (endpoint and credentials from the standard AWS_* environment). "
        "Default: ./warehouse.",
    )
    replica: str = Field(
        default_factory=default_replica,
        description="This replica's name, in every landing file name and row. Default: "
        "<hostname>-<pid> with characters outside [A-Za-z0-9_.-] replaced by '-'.",
    )
    capture: bool = Field(
        True, description="Capture every accepted row into the landing zone. Default: true."
    )
    flush_rows: int = Field(
        50_000,
        gt=0,
        description="Publish a landing file when this many rows are buffered (below 50,000 "
        "rows/s per replica FLUSH_INTERVAL comes first). Default: 50000.",
    )
    flush_interval: float = Field(
        1.0,
        gt=0,
        description="Publish when the oldest buffered row is this many seconds old. Default: 1.",
    )
    max_buffer_rows: int = Field(
        1_000_000,
        gt=0,
        description="Rows kept in memory while the landing zone refuses writes; rows beyond "
        "this are dropped and counted. Default: 1000000.",
    )
    landing_compression: Literal["none", "zstd", "snappy", "lz4"] = Field(
        "none",
        description="Parquet codec of landing files (zstd at level 1). Default: none: "
        "compaction rewrites landing files with zstd, and compressing here costs each flush "
        "CPU.",
    )
    capture_process: bool = Field(
        True,
        description="Publish landing files from a child process fed through shared memory "
        "(x86-64 Linux), so Parquet encoding never contends with requests for the GIL; false: "
        "from a thread of the server. Default: true.",
    )
    spool_rows: int = Field(
        200_000,
        ge=1_000,
        description="Rows the shared memory between the server and its flusher process holds "
        "(~70 MB at 30 features). What arrives while the flusher flushes must fit; rows that "
        "do not are dropped and counted. Default: 200000.",
    )
    max_batch_rows: int = Field(
        1000, gt=0, le=100_000, description="Most rows one request may carry. Default: 1000."
    )
    max_header_bytes: int = Field(
        64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Most bytes a request's line and headers may take; a larger header block "
        "gets 431 and its connection closed. Above what nginx forwards (its default header "
        "buffers hold 32 KiB), far below what would cost the server memory. Default: 65536.",
    )
    read_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds a client has to send a request's headers, and then again its "
        "whole body; a slower request gets 408 and its connection closed, so a client "
        "trickling bytes cannot hold a connection and its buffer forever. 30 s leaves the "
        "largest accepted body (~3 MB) room at 100 KB/s. Default: 30.",
    )
    event_loop: Literal["asyncio", "uvloop"] = Field(
        "asyncio",
        description="uvicorn's event loop. asyncio serves requests in the order they arrive; "
        "uvloop takes less CPU per request but, with many connections in flight, may leave "
        "some waiting many loop turns (a higher p99). Default: asyncio.",
    )

    @field_validator("model_name", "replica")
    @classmethod
    def _safe_name(cls, value: str, info: ValidationInfo) -> str:
        # these end up in file paths and Prometheus labels; ConfigError is not a ValueError
        try:
            return check_name(info.field_name.removesuffix("_name"), value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("model_version")
    @classmethod
    def _safe_version(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        try:
            return check_name("model version", value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("label", "model_path", "model", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # DRIFTLAKE_MODEL_PATH= (set but empty) means "not set"
        return None if value == "" else value
