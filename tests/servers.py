"""Start and stop real model-server replicas (``python -m serving``) for integration tests.

Example
-------
>>> with model_server(tmp_path / "wh", replica="r1", flush_interval=0.2) as server:
...     sent = send_rows(server.url, holdout_frame, batch_rows=32)
>>> server.proc.returncode   # stopped with SIGTERM: every buffered row is published
0
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import polars as pl
from prometheus_client.parser import text_string_to_metric_families

from serving.dataset import LABEL as DATA_LABEL
from serving.dataset import split_breast_cancer
from tests.conftest import REFERENCE, ROOT, free_port

MODEL = "breast_cancer"
LABEL = "target"


@dataclass
class ServerHandle:
    """A running model server: where it listens, its process, and its log file."""

    url: str
    proc: subprocess.Popen[bytes]
    port: int
    replica: str
    warehouse: Path
    log_path: Path

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful: in-flight requests finish, the buffer is published), then kill."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def logs(self) -> str:
        """Return what the server has logged so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metrics(self) -> dict[str, float]:
        """Scrape ``/metrics``; keys are ``name{label="v",...}`` as in the exposition."""
        return parse_metrics(httpx.get(f"{self.url}/metrics", timeout=10, trust_env=False).text)


@contextmanager
def model_server(
    warehouse: Path,
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
        Warehouse root (shared by replicas of one test).
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
    warehouse = Path(warehouse)
    warehouse.mkdir(parents=True, exist_ok=True)
    log_path = (log_dir or warehouse.parent) / f"server-{replica}-{port}.log"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLAKE_")}
    child_env.update({f"DRIFTLAKE_{k.upper()}": str(v) for k, v in env.items()})
    child_env["PYTHONUNBUFFERED"] = "1"
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
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env, stdout=log, stderr=subprocess.STDOUT)
    handle = ServerHandle(f"http://127.0.0.1:{port}", proc, port, replica, warehouse, log_path)
    try:
        _wait_healthy(handle, startup_timeout)
        yield handle
    finally:
        handle.stop()


def _wait_healthy(handle: ServerHandle, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if handle.proc.poll() is not None:
            raise RuntimeError(
                f"model server {handle.replica} exited with {handle.proc.returncode} before "
                f"answering /healthz; its log:\n{handle.logs()[-4000:]}"
            )
        try:
            if httpx.get(f"{handle.url}/healthz", timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"model server {handle.replica} did not answer /healthz within {timeout}s; "
                f"its log:\n{handle.logs()[-4000:]}"
            )
        time.sleep(0.05)


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy (returned), or fail at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {condition}")
        time.sleep(interval)


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
