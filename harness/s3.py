"""A real S3 API on loopback for tests: moto's standalone server, its buckets, and the AWS
environment that points a client at it; :class:`FaultProxy` injects S3 faults in front of it.

Example
-------
>>> with moto_server(tmp_path) as moto:     # tests use the ``moto`` and ``s3_url`` fixtures
...     bucket = moto.create_bucket()
...     child_env = {**os.environ, **moto.env}  # AWS_ENDPOINT_URL etc. for a child process
...     obs.put(s3_store(moto.endpoint, bucket), "wh/a.parquet", data)
...     moto.keys(bucket, "wh")
['wh/a.parquet']
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import obstore as obs
from obstore.store import S3Store

from harness.fault_proxy import FaultProxy, Mode
from harness.procs import Process, free_port, start_ready

ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"
REGION = "us-east-1"

__all__ = [
    "FaultProxy",
    "Mode",
    "MotoServer",
    "aws_env",
    "moto_server",
    "new_bucket_name",
    "s3_store",
    "start_moto",
]


def aws_env(endpoint: str) -> dict[str, str]:
    """The standard AWS variables that send an S3 client to ``endpoint`` with moto's
    credentials (the S3-specific endpoint too, which would win over the generic one)."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
    }


def new_bucket_name(prefix: str = "wh") -> str:
    """A bucket name no other test uses: ``<prefix>-`` and 12 hex digits (valid for S3)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def s3_store(
    endpoint: str,
    bucket: str,
    *,
    max_retries: int = 0,
    timeout: float = 5.0,
    prefix: str | None = None,
) -> S3Store:
    """An obstore client of ``bucket`` at ``endpoint`` with moto's credentials, plain HTTP,
    ``max_retries`` retries 10 ms apart, and a ``timeout`` in seconds per request (and for
    all its retries): a test's own view of a bucket, independent of the product's config."""
    return S3Store(
        bucket,
        prefix=prefix,
        endpoint=endpoint,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
        region=REGION,
        virtual_hosted_style_request=False,
        client_options={"allow_http": True, "timeout": timedelta(seconds=timeout)},
        retry_config={
            "max_retries": max_retries,
            "backoff": {
                "init_backoff": timedelta(milliseconds=10),
                "max_backoff": timedelta(milliseconds=50),
            },
            "retry_timeout": timedelta(seconds=timeout),
        },
    )


@dataclass
class MotoServer(Process):
    """A running ``python -m moto.server`` (all of moto's services; S3 is what is used)."""

    @property
    def endpoint(self) -> str:
        return self.url

    @property
    def env(self) -> dict[str, str]:
        """:func:`aws_env` for this server: for a child's environment or ``monkeypatch``."""
        return aws_env(self.endpoint)

    def create_bucket(self, name: str | None = None) -> str:
        """Create the bucket ``name`` (default :func:`new_bucket_name`); return its name.
        moto takes an unsigned ``PUT /<name>``."""
        name = name or new_bucket_name()
        resp = httpx.put(f"{self.endpoint}/{name}", timeout=10, trust_env=False)
        resp.raise_for_status()
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """The keys in ``bucket`` under ``prefix``, sorted (as the server has them)."""
        store = s3_store(self.endpoint, bucket)
        return sorted(
            meta["path"] for batch in obs.list(store, prefix=prefix or None) for meta in batch
        )


def start_moto(log_path: Path, *, timeout: float = 30.0) -> MotoServer:
    """Start moto's server on a free loopback port, its output in ``log_path``; return it
    once it answers HTTP (a second or two). Stop it with ``.stop()``."""
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = start_ready("moto", argv, log_path, port, ready_path="/moto-api/", timeout=timeout)
    return MotoServer(process.name, port, process.proc, process.log_path)


@contextmanager
def moto_server(workdir: Path) -> Iterator[MotoServer]:
    """:func:`start_moto` with its log in ``<workdir>/moto.log``, stopped when the block ends."""
    moto = start_moto(workdir / "moto.log")
    try:
        yield moto
    finally:
        moto.stop(10)
