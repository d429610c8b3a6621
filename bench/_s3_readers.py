"""Parquet readers against the bench's S3 bucket: which read it, with which options, how fast,
and which find the endpoint from ``AWS_*`` environment variables alone (bench.s3_clients).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from bench._s3_adapters import ACCESS_KEY, REGION, SECRET_KEY, PyarrowClient, S3fsClient
from harness.procs import run_python


def polars_options(endpoint: str) -> dict[str, str]:
    """``storage_options`` with which Polars reads the bucket at ``endpoint``."""
    return {
        "aws_endpoint_url": endpoint,
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET_KEY,
        "aws_region": REGION,
        "aws_allow_http": "true",
    }


def readers(endpoint: str, bucket: str, key: str) -> dict[str, Callable[[], pa.Table]]:
    """Each way of reading ``s3://bucket/key`` whole into Arrow; raising means it cannot."""
    uri = f"s3://{bucket}/{key}"
    pa_fs = PyarrowClient(endpoint, bucket).fs
    s3 = S3fsClient(endpoint, bucket).fs
    # no extension downloads: httpfs is not bundled, and the bench stays on loopback
    config = {"autoinstall_known_extensions": False, "autoload_known_extensions": True}

    def polars() -> pa.Table:
        return pl.scan_parquet(uri, storage_options=polars_options(endpoint)).collect().to_arrow()

    def pyarrow() -> pa.Table:
        return pq.read_table(f"{bucket}/{key}", filesystem=pa_fs)

    def duckdb_httpfs() -> pa.Table:
        con = duckdb.connect(config=config)
        return con.sql(f"select * from read_parquet('{uri}')").to_arrow_table()

    def duckdb_fsspec() -> pa.Table:
        con = duckdb.connect(config=config)
        con.register_filesystem(s3)
        return con.sql(f"select * from read_parquet('{uri}')").to_arrow_table()

    def duckdb_dataset() -> pa.Table:
        con = duckdb.connect(config=config)
        landing = ds.dataset(f"{bucket}/{key}", filesystem=pa_fs, format="parquet")  # noqa: F841
        return con.sql("select * from landing").to_arrow_table()  # replacement scan

    return {
        "Polars scan_parquet(storage_options)": polars,
        "pyarrow pq.read_table(filesystem=S3FileSystem)": pyarrow,
        "DuckDB read_parquet('s3://'), httpfs": duckdb_httpfs,
        "DuckDB register_filesystem(s3fs)": duckdb_fsspec,
        "DuckDB on a pyarrow dataset (replacement scan)": duckdb_dataset,
    }


ENV_CONFIGS = {
    "AWS_ENDPOINT_URL": {"AWS_ENDPOINT_URL": "{endpoint}"},
    "AWS_ENDPOINT_URL_S3": {"AWS_ENDPOINT_URL_S3": "{endpoint}"},
    "AWS_ENDPOINT_URL + AWS_ALLOW_HTTP": {
        "AWS_ENDPOINT_URL": "{endpoint}",
        "AWS_ALLOW_HTTP": "true",
    },
    "AWS_ENDPOINT_URL_S3 + AWS_ALLOW_HTTP": {
        "AWS_ENDPOINT_URL_S3": "{endpoint}",
        "AWS_ALLOW_HTTP": "true",
    },
}


def env_probes(endpoint: str, bucket: str, key: str) -> dict[str, dict[str, str]]:
    """Configuration name -> reader -> "ok" or its error, each in a child process whose only
    ``AWS_*`` variables are credentials, region and that configuration's."""
    proxies = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    proxies |= {"NO_PROXY": "127.0.0.1,localhost"}
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") and k.upper() not in {*proxies, "ALL_PROXY"}
    }
    # a client that ignores the endpoint variables hits a closed loopback port, not AWS
    base |= proxies | {k.lower(): v for k, v in proxies.items()}
    base |= {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }

    def probe(variables: dict[str, str]) -> dict[str, str]:
        env = base | {k: v.format(endpoint=endpoint) for k, v in variables.items()}
        done = run_python(["-m", "bench._s3_env_probe", bucket, key], env=env, timeout=90)
        if done.returncode != 0:
            raise RuntimeError(f"env probe failed ({done.returncode}):\n{done.stderr[-2000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(len(ENV_CONFIGS)) as pool:
        results = pool.map(probe, ENV_CONFIGS.values())
        return dict(zip(ENV_CONFIGS, results, strict=True))


def env_table(probes: dict[str, dict[str, str]]) -> list[str]:
    """Markdown: reader x environment configuration, "yes" or the error."""
    configs = list(probes)
    names = list(next(iter(probes.values())))
    lines = [
        "| reader, no endpoint argument | " + " | ".join(f"`{c}`" for c in configs) + " |",
        "|---|" + "---|" * len(configs),
    ]
    for name in names:
        cells = [_short(probes[c][name]) for c in configs]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _short(outcome: str) -> str:
    if outcome == "ok":
        return "yes"
    if "would go to AWS" in outcome:
        return "no (endpoint not read)"
    if "builder error" in outcome:
        return "no (refuses http://)"
    return "no: " + outcome[:80]
