"""Child of bench.s3_clients: which S3 readers find the endpoint from the environment alone.

Run as ``python -m bench._s3_env_probe BUCKET KEY`` with ``AWS_*`` variables set by the
parent; each reader is built with no endpoint or credential argument and reads the object
at ``s3://BUCKET/KEY``. Prints one JSON object: reader -> "ok" or why not.

Nothing leaves loopback: pyarrow's resolved endpoint is inspected before any read, and the
parent points HTTP(S)_PROXY at a closed loopback port (NO_PROXY=127.0.0.1), so a client
that ignores the endpoint variables fails on the proxy instead of reaching AWS.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

LOOPBACK = "http://127.0.0.1:"


def _polars(bucket: str, key: str) -> object:
    import polars as pl

    return pl.scan_parquet(f"s3://{bucket}/{key}").select(pl.len()).collect().item()


def _pyarrow_read(fs: object, path: str) -> object:
    import pyarrow.parquet as pq

    endpoint = fs.__reduce__()[1][0]["endpoint_override"]  # the options it resolved
    if not endpoint.startswith(LOOPBACK):
        raise LookupError(f"endpoint_override={endpoint!r}: would go to AWS")
    return pq.read_table(path, filesystem=fs).num_rows


def _pyarrow_filesystem(bucket: str, key: str) -> object:
    import pyarrow.fs as pafs

    return _pyarrow_read(pafs.S3FileSystem(), f"{bucket}/{key}")


def _pyarrow_uri(bucket: str, key: str) -> object:
    import pyarrow.fs as pafs

    # what pq.read_table("s3://...") and pyarrow.dataset.dataset("s3://...") resolve to
    return _pyarrow_read(*pafs.FileSystem.from_uri(f"s3://{bucket}/{key}"))


def _obstore(bucket: str, key: str) -> object:
    import obstore as obs
    from obstore.store import S3Store

    return len(obs.get(S3Store(bucket), key).bytes())


def _s3fs(bucket: str, key: str) -> object:
    import s3fs

    return len(s3fs.S3FileSystem(skip_instance_cache=True).cat_file(f"{bucket}/{key}"))


READERS: dict[str, Callable[[str, str], object]] = {
    "Polars scan_parquet, no storage_options": _polars,
    "pyarrow S3FileSystem()": _pyarrow_filesystem,
    "pyarrow 's3://...' URI (FileSystem.from_uri)": _pyarrow_uri,
    "obstore S3Store(bucket)": _obstore,
    "s3fs S3FileSystem()": _s3fs,
}


def main() -> None:
    bucket, key = sys.argv[1], sys.argv[2]
    out = {}
    for name, read in READERS.items():
        try:
            read(bucket, key)
            out[name] = "ok"
        except Exception as e:
            out[name] = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
