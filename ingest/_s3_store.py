"""The warehouse on an S3-compatible object store (AWS S3, MinIO, R2, GCS's S3 API).

Endpoint, region and credentials come from the standard AWS environment, so no driftlake
setting names a store: ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (an ``http://``
endpoint is allowed as given), ``AWS_REGION`` or ``AWS_DEFAULT_REGION``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, and
``AWS_PROFILE`` (resolved with botocore when it is installed), else the instance's or
container's role.

Every request goes through obstore (Rust's ``object_store``), the client that has S3's
conditional writes (``bench.s3_clients``); Polars reads the same URLs with
:attr:`S3Warehouse.storage_options`.
"""

from __future__ import annotations

import io
import os
import re
import threading
import time
from datetime import timedelta
from typing import Any

import obstore as obs
import pyarrow as pa
import pyarrow.parquet as pq
from obstore.exceptions import AlreadyExistsError, PreconditionError
from obstore.store import S3Store

from ingest.errors import ConfigError, LandingError, ObjectExistsError
from ingest.storage import StoredFile, Warehouse

# A request is retried inside the client for a few seconds only: the callers own the long
# waits (a replica's writer keeps its rows and backs off; a driver's cycle fails and runs again)
_RETRY = {
    "max_retries": 4,
    "backoff": {
        "init_backoff": timedelta(milliseconds=100),
        "max_backoff": timedelta(seconds=2),
        "base": 2,
    },
    "retry_timeout": timedelta(seconds=10),
}
_CLIENT = {"connect_timeout": timedelta(seconds=5), "timeout": timedelta(seconds=60)}

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_open: dict[str, S3Warehouse] = {}
_open_lock = threading.Lock()


def s3_environment() -> dict[str, str]:
    """Resolve the AWS environment into object_store's option names (``aws_*``)."""
    env = os.environ
    options = {
        "aws_region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
    }
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["aws_endpoint_url"] = endpoint.rstrip("/")
        if endpoint.startswith("http://"):
            options["aws_allow_http"] = "true"
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    token = env.get("AWS_SESSION_TOKEN")
    if not (key and secret) and env.get("AWS_PROFILE"):
        key, secret, token = _profile_credentials(env["AWS_PROFILE"])
    if key and secret:
        options["aws_access_key_id"] = key
        options["aws_secret_access_key"] = secret
        if token:
            options["aws_session_token"] = token
    return options


def _profile_credentials(profile: str) -> tuple[str, str, str | None]:
    try:
        import botocore.session
    except ImportError as exc:
        raise ConfigError(
            f"AWS_PROFILE={profile!r} needs botocore to read ~/.aws (pip install botocore), "
            "or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from exc
    try:
        creds = botocore.session.Session(profile=profile).get_credentials()
    except Exception as exc:  # botocore's ProfileNotFound and parse errors
        raise ConfigError(f"AWS profile {profile!r} is unusable: {exc}") from exc
    if creds is None:
        raise ConfigError(f"AWS profile {profile!r} holds no credentials")
    frozen = creds.get_frozen_credentials()
    return frozen.access_key, frozen.secret_key, frozen.token


class S3Warehouse(Warehouse):
    """A warehouse under ``s3://bucket/prefix``; see :class:`ingest.storage.Warehouse`."""

    @classmethod
    def open(cls, url: str) -> S3Warehouse:
        """Return this process's warehouse for ``url`` (one client, one connection pool per
        URL and environment; a Dask worker unpickles many tasks' warehouses)."""
        options = s3_environment()
        key = url + "\0" + repr(sorted(options.items()))
        with _open_lock:
            found = _open.get(key)
            if found is None:
                found = _open[key] = cls(url, options)
        return found

    def __init__(self, url: str, options: dict[str, str] | None = None) -> None:
        if "store" in self.__dict__:  # Warehouse(url) returned this process's open one
            return
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if _BUCKET.fullmatch(bucket) is None:
            raise ConfigError(
                f"warehouse URL {url!r}: {bucket!r} is not a bucket name (3-63 characters of "
                "a-z, 0-9, '.', '-'): expected s3://bucket/prefix"
            )
        parts = prefix.strip("/").split("/") if prefix.strip("/") else []
        if any(p in ("", ".", "..") or not p.isprintable() for p in parts):
            raise ConfigError(
                f"warehouse URL {url!r}: the prefix {prefix!r} has an empty, '.', '..' or "
                "unprintable segment"
            )
        self.url = url
        self.bucket = bucket
        self.prefix = "/".join(parts)
        self._options = s3_environment() if options is None else options
        config = {k.removeprefix("aws_"): v for k, v in self._options.items()}
        allow_http = config.pop("allow_http", "") == "true"
        self.store = S3Store(
            bucket,
            prefix=self.prefix or None,
            config=config,
            client_options={**_CLIENT, "allow_http": allow_http},
            retry_config=_RETRY,
        )
        self._check()

    def _check(self) -> None:
        """Fail now, naming the bucket or the credentials, if the store cannot be used."""
        try:
            obs.list_with_delimiter(self.store, None)
        except Exception as exc:  # obstore raises generic errors that carry S3's code
            raise ConfigError(self._diagnose(exc)) from None

    def _diagnose(self, exc: Exception) -> str:
        text = str(exc)
        where = self._options.get("aws_endpoint_url", "AWS S3")
        # S3's error code, else the HTTP status: never a bare number (request ids hold digits)
        for code in (
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "403 Forbidden",
        ):
            if code in text:
                return (
                    f"the store at {where} rejected the credentials for bucket {self.bucket!r} "
                    f"({code}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
                )
        if "NoSuchBucket" in text or "404 Not Found" in text:
            return f"bucket {self.bucket!r} does not exist at {where}: create it first"
        first = text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__
        return f"cannot reach the S3 store at {where} for bucket {self.bucket!r}: {first}"

    def __repr__(self) -> str:
        return f"Warehouse({self.url!r})"

    @property
    def storage_options(self) -> dict[str, str]:
        return dict(self._options)

    def uri(self, rel: str) -> str:
        base = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        return f"{base}/{rel}" if rel else base

    def open_input(self, rel: str, whole: bool = False) -> _ObjectFile | pa.BufferReader:
        try:
            if whole:  # one request; else a footer read fetches only the object's tail
                return pa.BufferReader(bytes(obs.get(self.store, rel).bytes()))
            return _ObjectFile(self.store, rel)
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise LandingError(f"cannot read {self.uri(rel)}: {_short(exc)}") from exc

    def _publish(
        self, table: pa.Table, rel: str, exclusive: bool, options: dict[str, Any], cache: bool
    ) -> StoredFile:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, **options)
        body = sink.getvalue()
        # one PUT: S3 shows an object only once its upload completed, so a reader never sees
        # part of it (a single PUT holds up to 5 GiB, far above any landing or history file)
        try:
            obs.put(
                self.store,
                rel,
                body.to_pybytes(),
                mode="create" if exclusive else "overwrite",
                use_multipart=False,
            )
        except AlreadyExistsError:
            raise ObjectExistsError(rel) from None
        except Exception as exc:
            raise LandingError(f"cannot publish {rel} to {self.uri(rel)}: {_short(exc)}") from exc
        return StoredFile(rel, body.size, time.time_ns())

    def write_bytes(self, rel: str, data: bytes) -> None:
        try:
            obs.put(self.store, rel, data, use_multipart=False)
        except Exception as exc:
            raise LandingError(f"cannot write {self.uri(rel)}: {_short(exc)}") from exc

    def read_versioned(self, rel: str) -> tuple[bytes, str] | None:
        try:
            got = obs.get(self.store, rel)
            return bytes(got.bytes()), str(got.meta["e_tag"])
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise LandingError(f"cannot read {self.uri(rel)}: {_short(exc)}") from exc

    def put_if(self, rel: str, data: bytes, match: str | None) -> str | None:
        mode: Any = "create" if match is None else {"e_tag": match}
        try:
            return str(obs.put(self.store, rel, data, mode=mode, use_multipart=False)["e_tag"])
        except (AlreadyExistsError, PreconditionError):
            # a retried PUT whose first attempt landed finds its own bytes: that one won
            now = self.read_versioned(rel)
            return now[1] if now is not None and now[0] == data else None
        except Exception as exc:
            raise LandingError(f"cannot write {self.uri(rel)}: {_short(exc)}") from exc

    def stat(self, rel: str) -> StoredFile | None:
        try:
            meta = obs.head(self.store, rel)
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise LandingError(f"cannot stat {self.uri(rel)}: {_short(exc)}") from exc
        return StoredFile(rel, meta["size"], int(meta["last_modified"].timestamp() * 1e9))

    def remove_tree(self, rel_dir: str) -> None:
        self.delete_many([f.path for f in self.list_files(rel_dir, suffix="")])

    def list_files(self, rel_dir: str, suffix: str = ".parquet") -> list[StoredFile]:
        prefix = rel_dir.rstrip("/") + "/" if rel_dir else None
        out = []
        try:
            for page in obs.list(self.store, prefix, chunk_size=1000):
                out += [
                    StoredFile(m["path"], m["size"], int(m["last_modified"].timestamp() * 1e9))
                    for m in page
                    if m["path"].endswith(suffix)
                ]
        except Exception as exc:
            raise LandingError(f"cannot list {self.uri(rel_dir)}: {_short(exc)}") from exc
        out.sort(key=lambda f: f.path)
        return out

    def list_dirs(self, rel_dir: str) -> list[str]:
        prefix = rel_dir.rstrip("/") + "/" if rel_dir else None
        try:
            found = obs.list_with_delimiter(self.store, prefix)
        except Exception as exc:
            raise LandingError(f"cannot list {self.uri(rel_dir)}: {_short(exc)}") from exc
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in found["common_prefixes"])

    def move(self, rel: str, dest_rel: str) -> None:
        # S3 has no rename: copy, then delete. A crash between the two leaves both; the
        # source is still the landing file, so the next cycle moves it again
        try:
            obs.copy(self.store, rel, dest_rel)
            obs.delete(self.store, rel)
        except Exception as exc:
            raise LandingError(f"cannot move {rel} to {dest_rel}: {_short(exc)}") from exc

    def delete(self, rel: str) -> None:
        self.delete_many([rel])

    def delete_many(self, rels: list[str] | tuple[str, ...]) -> None:
        rels = list(rels)
        try:
            for i in range(0, len(rels), 1000):  # DeleteObjects takes 1,000 keys a request
                obs.delete(self.store, rels[i : i + 1000])
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise LandingError(f"cannot delete under {self.uri('')}: {_short(exc)}") from exc


class _ObjectFile(io.RawIOBase):
    """A read-only, seekable file over one object for pyarrow.

    The first request fetches the object's last 64 KiB (a Parquet footer) and learns its
    size from the answer, with no HEAD; an object of at most ``_WHOLE`` bytes is then fetched
    entire by a second request, so reading a landing file costs two requests. Reads of a
    larger object outside its tail are ranged GETs (a footer read fetches the tail only).
    """

    def __init__(self, store: S3Store, path: str) -> None:
        self._store, self._path, self._pos = store, path, 0
        try:
            got = obs.get(store, path, options={"range": {"suffix": _TAIL}})
        except FileNotFoundError:
            raise
        except Exception:  # an empty object has no suffix to give (416): fetch it whole
            got = obs.get(store, path)
        self._size = int(got.meta["size"])
        self._data = bytes(got.bytes())
        self._start = self._size - len(self._data)  # where the bytes held begin
        if self._start > 0 and self._size <= _WHOLE:
            head = obs.get_range(store, path, start=0, end=self._start)
            self._data, self._start = bytes(head) + self._data, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        end = min(self._pos + len(buffer), self._size)
        if end <= self._pos:
            return 0
        if self._pos >= self._start:
            data = memoryview(self._data)[self._pos - self._start : end - self._start]
        else:
            data = memoryview(obs.get_range(self._store, self._path, start=self._pos, end=end))
        n = len(data)
        memoryview(buffer)[:n] = data
        self._pos += n
        return n


_TAIL = 64 * 1024
_WHOLE = 16 * 1024 * 1024  # landing files are far smaller; compacted parts may not be


def _short(exc: BaseException) -> str:
    """The first line of an obstore error (its debug dump follows on later lines)."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
