"""The S3 operations bench.s3_clients times, once per client library (obstore, pyarrow, s3fs).

Every adapter does the same thing with its library's own API: the call a driftlake module
would make, with nothing cached between calls (s3fs's listing cache is off). ``None`` from a
list method means the library has no API for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import obstore as obs
import pyarrow.fs as pafs
import s3fs
from obstore.exceptions import AlreadyExistsError, PreconditionError
from obstore.store import S3Store

ACCESS_KEY = SECRET_KEY = "testing"
REGION = "us-east-1"


@dataclass(frozen=True)
class Conditional:
    """How a library writes conditionally: the calls, and what moto answered to them."""

    create: str  # create-only (If-None-Match: *) call
    match: str  # replace-if-etag (If-Match) call


class ObstoreClient:
    """Rust object_store through obstore; one S3Store per bucket."""

    name = "obstore"
    conditional = Conditional(
        create='obs.put(store, key, data, mode="create")',
        match='obs.put(store, key, data, mode={"e_tag": etag})',
    )
    conflicts = (AlreadyExistsError, PreconditionError)
    list_after_api = "obs.list(store, prefix=prefix, offset=key), sent as start-after"

    def __init__(self, endpoint: str, bucket: str) -> None:
        self.store = S3Store(
            bucket,
            endpoint=endpoint,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            region=REGION,
            client_options={"allow_http": True},
        )

    def put(self, key: str, data: bytes) -> None:
        obs.put(self.store, key, data)

    def get(self, key: str) -> int:
        return len(obs.get(self.store, key).bytes())

    def get_suffix(self, key: str, length: int) -> int:
        return len(obs.get(self.store, key, options={"range": {"suffix": length}}).bytes())

    def list(self, prefix: str) -> int:
        return len(obs.list(self.store, prefix=prefix).collect())

    def list_delimited(self, prefix: str) -> int:
        return len(obs.list_with_delimiter(self.store, prefix=prefix)["common_prefixes"])

    def list_after(self, prefix: str, after: str) -> int | None:
        return len(obs.list(self.store, prefix=prefix, offset=after).collect())

    def put_create(self, key: str, data: bytes) -> None:
        obs.put(self.store, key, data, mode="create")

    def put_if_match(self, key: str, data: bytes, etag: str) -> None:
        obs.put(self.store, key, data, mode={"e_tag": etag})


class PyarrowClient:
    """Arrow C++'s S3 filesystem (AWS SDK for C++) through pyarrow.fs.S3FileSystem.

    It has no precondition option: the conditional calls pass the headers as object
    metadata, the only per-write knob it has, to check that they do not reach S3.
    """

    name = "pyarrow"
    conditional = Conditional(
        create='open_output_stream(path, metadata={"If-None-Match": "*"})',
        match='open_output_stream(path, metadata={"If-Match": etag})',
    )
    conflicts = (OSError,)
    list_after_api = None

    def __init__(self, endpoint: str, bucket: str) -> None:
        self.bucket = bucket
        self.fs = pafs.S3FileSystem(
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region=REGION,
            endpoint_override=endpoint,  # its http:// scheme selects plain HTTP
            # a small object is one PUT, not create + upload part + complete (the default)
            allow_delayed_open=True,
        )

    def _path(self, key: str) -> str:
        return f"{self.bucket}/{key}"

    def put(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> None:
        with self.fs.open_output_stream(self._path(key), metadata=metadata) as out:
            out.write(data)

    def get(self, key: str) -> int:
        with self.fs.open_input_stream(self._path(key)) as f:
            return len(f.read())

    def get_suffix(self, key: str, length: int) -> int:
        # no suffix range: the size comes from a HEAD (what a Parquet footer read does here)
        with self.fs.open_input_file(self._path(key)) as f:
            return len(f.read_at(length, f.size() - length))

    def list(self, prefix: str) -> int:
        selector = pafs.FileSelector(self._path(prefix), recursive=True)
        return sum(i.type == pafs.FileType.File for i in self.fs.get_file_info(selector))

    def list_delimited(self, prefix: str) -> int:
        selector = pafs.FileSelector(self._path(prefix), recursive=False)
        return sum(i.type == pafs.FileType.Directory for i in self.fs.get_file_info(selector))

    def list_after(self, prefix: str, after: str) -> int | None:
        return None  # FileSelector has no start-after

    def put_create(self, key: str, data: bytes) -> None:
        self.put(key, data, {"If-None-Match": "*"})

    def put_if_match(self, key: str, data: bytes, etag: str) -> None:
        self.put(key, data, {"If-Match": etag})


class S3fsClient:
    """fsspec's s3fs (aiobotocore); its sync API, listing cache off."""

    name = "s3fs"
    conditional = Conditional(
        create='fs.pipe_file(path, data, mode="create")',
        match="fs.pipe_file(path, data, IfMatch=etag)",  # extra kwargs go to put_object
    )
    conflicts = (OSError,)  # FileExistsError for create, OSError(EINVAL) for a stale etag
    list_after_api = (
        'none in the filesystem API; botocore\'s `fs.call_s3("list_objects_v2", '
        "StartAfter=key, ...)` paged by hand (timed)"
    )

    def __init__(self, endpoint: str, bucket: str) -> None:
        self.bucket = bucket
        self.fs = s3fs.S3FileSystem(
            key=ACCESS_KEY,
            secret=SECRET_KEY,
            endpoint_url=endpoint,
            client_kwargs={"region_name": REGION},
            use_listings_cache=False,
            skip_instance_cache=True,
        )

    def _path(self, key: str) -> str:
        return f"{self.bucket}/{key}"

    def put(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(key), data)

    def get(self, key: str) -> int:
        return len(self.fs.cat_file(self._path(key)))

    def get_suffix(self, key: str, length: int) -> int:
        return len(self.fs.cat_file(self._path(key), start=-length))  # bytes=-N

    def list(self, prefix: str) -> int:
        return len(self.fs.find(self._path(prefix)))

    def list_delimited(self, prefix: str) -> int:
        return sum(i["type"] == "directory" for i in self.fs.ls(self._path(prefix), detail=True))

    def list_after(self, prefix: str, after: str) -> int | None:
        # no filesystem API: botocore's call through fs.call_s3, paged by hand
        kwargs = {"Bucket": self.bucket, "Prefix": f"{prefix}/", "StartAfter": after}
        count = 0
        while True:
            page = self.fs.call_s3("list_objects_v2", **kwargs)
            count += len(page.get("Contents", []))
            if not page.get("IsTruncated"):
                return count
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def put_create(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(key), data, mode="create")

    def put_if_match(self, key: str, data: bytes, etag: str) -> None:
        self.fs.pipe_file(self._path(key), data, IfMatch=etag)


Client = ObstoreClient | PyarrowClient | S3fsClient
CLIENTS: tuple[type[ObstoreClient] | type[PyarrowClient] | type[S3fsClient], ...] = (
    ObstoreClient,
    PyarrowClient,
    S3fsClient,
)
