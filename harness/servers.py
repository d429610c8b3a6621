"""Start and stop real model-server replicas (``python -m serving``) and send them rows.

Example
-------
>>> with model_server(tmp_path / "wh", replica="r1", flush_interval=0.2) as server:
...     sent = send_rows(server.url, holdout_frame, batch_rows=32)
>>> server.proc.returncode   # stopped with SIGTERM: every buffered row is published
0
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import polars as pl
from prometheus_client.parser import text_string_to_metric_families

from harness import MODEL, REFERENCE
from harness.procs import Process, driftlake_env, free_port, start_ready, wait_until
from serving.dataset import LABEL as DATA_LABEL
from serving.dataset import split_breast_cancer

LABEL = "target"


@dataclass
class ServerHandle(Process):
    """A running model server: its process and log (see :class:`Process`), replica, warehouse."""

    replica: str = field(kw_only=True)
    warehouse: Path = field(kw_only=True)

    def metrics(self) -> dict[str, float]:
        """Scrape ``/metrics``; keys are ``name{label="v",...}`` as in the exposition."""
        return parse_metrics(httpx.get(f"{self.url}/metrics", timeout=10, trust_env=False).text)


@contextmanager
def model_server(
    warehouse: Path | str,
    port: int | None = None,
    replica: str = "r1",
    *,
    reference: Path = REFERENCE,
    args: tuple[str, ...] = (),
    startup_timeout: float = 60.0,
    log_dir: Path | None = None,
    **env: Any,
) -> Iterator[ServerHandle]:
    """Run ``python -m serving`` on 127.0.0.1 until the block ends, then always stop it.

    Parameters
    ----------
    warehouse
        Warehouse root (shared by replicas of one test): a directory or an s3:// URL (the
        child inherits this process's AWS_* variables; give ``log_dir`` then).
    port
        TCP port; a free one when None.
    replica
        Replica name (landing file names and the ``replica`` column).
    reference
        Reference Parquet file (default: the bundled ``reference.parquet``).
    args
        Extra command-line flags.
    startup_timeout
        Seconds to wait for ``/healthz`` to answer before failing with the server's log.
    log_dir
        Where ``server-<replica>-<port>.log`` is written (default: the warehouse's parent).
    **env
        Settings as ``DRIFTLAKE_<NAME>`` variables, e.g. ``flush_interval=0.2``. Inherited
        ``DRIFTLAKE_*`` variables are removed so every server starts from the defaults.
    """
    port = port or free_port()
    if str(warehouse).startswith("s3://"):
        assert log_dir is not None, "an s3:// warehouse needs a log_dir"
    else:
        warehouse = Path(warehouse)
        warehouse.mkdir(parents=True, exist_ok=True)
    log_path = (log_dir or Path(warehouse).parent) / f"server-{replica}-{port}.log"
    cmd = [
        sys.executable,
        "-m",
        "serving",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--warehouse",
        str(warehouse),
        "--reference",
        str(reference),
        "--replica",
        replica,
        *args,
    ]
    child_env = driftlake_env(**env) | {"PYTHONUNBUFFERED": "1"}
    started = start_ready(
        f"model server {replica}", cmd, log_path, port, env=child_env, timeout=startup_timeout
    )
    handle = ServerHandle(
        started.name, port, started.proc, log_path, replica=replica, warehouse=warehouse
    )
    try:
        yield handle
    finally:
        handle.stop()


def feature_frame(path: Path = REFERENCE, label: str = LABEL) -> pl.DataFrame:
    """Return the feature columns of a reference-like Parquet file (the label dropped)."""
    frame = pl.read_parquet(path)
    return frame.drop(label) if label in frame.columns else frame


def holdout_features() -> pl.DataFrame:
    """Return the held-out breast-cancer rows (a genuine new sample, same distribution)."""
    return split_breast_cancer()[1].drop(DATA_LABEL)


def request_body(columns: list[str], rows: list[list[Any]] | list[tuple[Any, ...]]) -> bytes:
    """Return the JSON body existing clients send: ``{"features": {"columns", "data"}}``."""
    return orjson.dumps({"features": {"columns": columns, "data": rows}})


@dataclass
class SentRows:
    """What :func:`send_rows` sent and got back."""

    requests: int = 0
    rows: int = 0
    request_ids: list[str] = field(default_factory=list)
    predictions: list[Any] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)


def send_rows(
    url: str,
    frame: pl.DataFrame,
    *,
    batch_rows: int = 1,
    path: str = "/get-prediction",
    client: httpx.Client | None = None,
) -> SentRows:
    """POST every row of ``frame`` in requests of ``batch_rows`` rows; fail on any non-200.

    Returns the request ids, predictions and probabilities in row order.
    """
    own = client is None
    client = client or httpx.Client(timeout=30, trust_env=False)  # loopback: no proxy
    out = SentRows()
    try:
        for start in range(0, frame.height, batch_rows):
            chunk = frame.slice(start, batch_rows)
            body = request_body(chunk.columns, chunk.rows())
            resp = client.post(
                f"{url}{path}", content=body, headers={"content-type": "application/json"}
            )
            if resp.status_code != 200:
                raise AssertionError(f"{path} answered {resp.status_code}: {resp.text[:500]}")
            answer = resp.json()
            out.requests += 1
            out.rows += chunk.height
            out.request_ids += answer["request_ids"]
            out.predictions += answer["prediction"]
            out.probabilities += answer.get("probability", [])
    finally:
        if own:
            client.close()
    return out


def landing_frame(warehouse: Path, model: str = MODEL) -> pl.DataFrame:
    """Read a model's landing rows with plain Polars (``model``, ``date``, ``hour`` included)."""
    root = Path(warehouse) / "landing"
    if not any(root.glob(f"model={model}/**/*.parquet")):
        return pl.DataFrame()
    lazy = pl.scan_parquet(f"{root}/**/*.parquet", hive_partitioning=True)
    return lazy.filter(pl.col("model") == model).collect()


def wait_landed(warehouse: Path, request_ids: Iterable[str], timeout: float = 20.0) -> None:
    """Wait until every one of ``request_ids`` is in the warehouse's landing rows."""
    wanted = set(request_ids)

    def landed() -> bool:
        frame = landing_frame(warehouse)
        return bool(frame.height) and wanted <= set(frame["request_id"].to_list())

    wait_until(landed, timeout=timeout)


def parse_metrics(text: str) -> dict[str, float]:
    """Parse a Prometheus text exposition into ``{'name{a="x"}': value}`` (no labels: name)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out
