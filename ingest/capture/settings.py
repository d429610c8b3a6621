"""The capture library's settings: one pydantic-settings class a service reads from
``DRIFTLAKE_*`` variables (the model server's names where the meaning is the same)."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.errors import ConfigError
from ingest.paths import check_name

__all__ = ["FEATURE_KINDS", "WRITERS", "MonitorSettings", "default_replica"]

FEATURE_KINDS = ("numeric", "categorical")
WRITERS = ("auto", "process", "thread")


def default_replica() -> str:
    """Return ``<hostname>-<pid>`` reduced to the characters a replica name may hold."""
    raw = f"{socket.gethostname()[:80]}-{os.getpid()}"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).lstrip(".-")
    return name[:100] or f"replica-{os.getpid()}"


class MonitorSettings(BaseSettings):
    """How a :class:`~ingest.capture.monitor.Monitor` captures, from ``DRIFTLAKE_*`` variables
    or arguments (arguments win); ``Monitor.from_settings`` builds one.

    Example
    -------
    >>> s = MonitorSettings(model_name="churn", features={"age": "numeric", "plan": "categorical"})
    >>> s.writer, s.flush_interval
    ('auto', 1.0)
    """

    model_config = SettingsConfigDict(
        env_prefix="DRIFTLAKE_", extra="forbid", protected_namespaces=(), frozen=True
    )

    model_name: str = Field(
        "model",
        description="Model name: the landing partition model=<name> the analytics job reads "
        "(its DRIFTLAKE_MODEL_NAME). Default: model.",
    )
    warehouse: str = Field(
        "./warehouse",
        description="Warehouse root the landing zone lives in: a path, file:// URL or "
        "s3://bucket/prefix (endpoint and credentials from the standard AWS_* environment). "
        "Default: ./warehouse.",
    )
    reference_path: Path | None = Field(
        None,
        description="Reference Parquet file whose columns (less the label) are the captured "
        "features: numeric columns numeric, others categorical (only its schema is read). "
        "Default: none; give this or FEATURES.",
    )
    label: str | None = Field(
        "target",
        description="Label column of the reference file (not a feature). Default: target.",
    )
    features: dict[str, Literal["numeric", "categorical"]] | None = Field(
        None,
        description="The captured features and their kinds, in order, instead of a reference: "
        'a JSON object ({"age": "numeric", "plan": "categorical"}) or, as a flag, '
        "age:numeric,plan:categorical. Default: none; give this or REFERENCE_PATH.",
    )
    model_version: str = Field(
        "unversioned",
        description="Version label written into every captured row. Default: unversioned.",
    )
    replica: str = Field(
        default_factory=default_replica,
        description="This process's name, in every landing file name and row; unique per "
        "process writing to one warehouse. Default: <hostname>-<pid> with characters outside "
        "[A-Za-z0-9_.-] replaced by '-'.",
    )
    writer: Literal["auto", "process", "thread"] = Field(
        "auto",
        description="process: publish landing files from a child process fed through shared "
        "memory (x86-64 Linux), off this process's GIL; thread: from a thread of this process; "
        "auto: process where supported, else thread. Default: auto.",
    )
    flush_rows: int = Field(
        50_000,
        gt=0,
        description="Publish a landing file when this many rows are buffered. Default: 50000.",
    )
    flush_interval: float = Field(
        1.0,
        gt=0,
        description="Publish when the oldest buffered row is this many seconds old (a SIGKILL "
        "of a process with the thread writer loses at most this long's rows). Default: 1.",
    )
    max_buffer_rows: int = Field(
        1_000_000,
        gt=0,
        description="Rows kept in memory while the landing zone refuses writes; rows beyond "
        "this are dropped and counted. Default: 1000000.",
    )
    landing_compression: Literal["none", "zstd", "snappy", "lz4"] = Field(
        "none",
        description="Parquet codec of landing files (zstd at level 1). Default: none.",
    )
    spool_rows: int = Field(
        200_000,
        ge=1_000,
        description="Rows the process writer's shared memory holds between this process and "
        "its flusher; rows that do not fit are dropped and counted. Default: 200000.",
    )
    handle_sigterm: bool = Field(
        True,
        description="When a monitor starts in the main thread and SIGTERM has its default "
        "action, make SIGTERM exit through SystemExit(143) so the monitor publishes every "
        "captured row first (a server such as uvicorn that handles SIGTERM itself closes the "
        "monitor in its shutdown). Default: true.",
    )

    @field_validator("model_name", "replica", "model_version")
    @classmethod
    def _safe_name(cls, value: str, info: ValidationInfo) -> str:
        # these end up in file paths and rows; ConfigError is not a ValueError
        kind = {"model_name": "model", "model_version": "model version"}.get(
            info.field_name, info.field_name
        )
        try:
            return check_name(kind, value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("label", "reference_path", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("features", mode="before")
    @classmethod
    def _features_text(cls, value: object) -> object:
        # a flag's text: JSON, or name:kind pairs separated by commas
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text in ("", "none"):
            return None
        if text.startswith("{"):
            return json.loads(text)
        out: dict[str, str] = {}
        for part in text.split(","):
            name, sep, kind = part.strip().rpartition(":")
            if not sep or not name:
                raise ValueError(
                    f"feature {part.strip()!r} is not name:kind; expected e.g. "
                    "age:numeric,plan:categorical"
                )
            out[name.strip()] = kind.strip()
        return out
