"""The warehouse's storage seam: every landing, history and state byte goes through here.

A warehouse is named by a URL: a local path (or ``file://``) by default, or
``s3://bucket/prefix`` on any S3-compatible object store (endpoint, region and credentials
from the standard AWS environment). Callers see one interface; each backend keeps the
same guarantees with its own means:

======================  ===============================  =================================
guarantee               local filesystem                 S3
======================  ===============================  =================================
visible only whole      write to ``_staging/``, fsync,   one PUT of the whole object (S3
                        rename into place                never shows a failed upload)
durable when published  fdatasync before the rename      the PUT's 200 (S3 is durable)
create exclusively      hard link (fails if it exists)   PUT ``If-None-Match: *``
replace if unchanged    version check under a flock      PUT ``If-Match: <etag>``
move (quarantine)       rename                           copy, then delete
list a directory        readdir                          LIST with a ``/`` delimiter
======================  ===============================  =================================
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import pyarrow as pa

from ingest.errors import ConfigError


@dataclass(frozen=True)
class StoredFile:
    """A file in the warehouse: path relative to the root, size and modification time."""

    path: str
    size: int
    mtime_ns: int


class Warehouse:
    """A warehouse root: a local directory or an ``s3://bucket/prefix``.

    ``Warehouse(url)`` returns the backend for the URL. Paths given to every method are
    relative to the root and use ``/``.

    Parameters
    ----------
    url
        ``/some/dir``, ``./warehouse``, ``file:///some/dir`` (the directory is created) or
        ``s3://bucket/prefix`` (the bucket must exist; it is checked now, and a missing
        bucket, rejected credentials or an unreachable endpoint raise ConfigError).

    Example
    -------
    >>> wh = Warehouse("/tmp/wh-doc")
    >>> wh.uri("landing")
    '/tmp/wh-doc/landing'
    """

    url: str

    def __new__(cls, url: str | os.PathLike[str], *args: object) -> Warehouse:
        if cls is not Warehouse:
            return super().__new__(cls)
        url = os.fspath(url)
        if url.startswith("s3://"):
            from ingest._s3_store import S3Warehouse

            return S3Warehouse.open(url)
        if "://" in url and not url.startswith("file://"):
            raise ConfigError(
                f"warehouse URL {url!r} is not supported: expected a local path, a file:// URL "
                "or s3://bucket/prefix"
            )
        from ingest._local_store import LocalWarehouse

        return super().__new__(LocalWarehouse)

    def __reduce__(self):  # pickles by URL so Dask workers open the same warehouse
        return (Warehouse, (self.url,))

    @property
    def is_local(self) -> bool:
        """True for a warehouse on a local (or mounted) filesystem."""
        return self.storage_options is None

    @property
    def storage_options(self) -> dict[str, str] | None:
        """Options Polars' ``scan_parquet``/``read_parquet`` need for :meth:`uri` paths
        (None for a local warehouse)."""
        return None

    def uri(self, rel: str) -> str:
        """Return the absolute location of ``rel`` (a path or ``s3://`` URL that Polars,
        pyarrow and DuckDB read; pass :attr:`storage_options` to Polars)."""
        raise NotImplementedError

    def open_input(self, rel: str, whole: bool = False) -> str | BinaryIO | pa.NativeFile:
        """Return what ``pyarrow.parquet.ParquetFile`` opens to read ``rel`` (FileNotFoundError
        if it is gone); ``whole`` says most of it will be read (a store fetches it at once)."""
        raise NotImplementedError

    def publish_table(
        self,
        table: pa.Table,
        rel: str,
        *,
        exclusive: bool = False,
        compression: str = "zstd",
        compression_level: int | None = 1,
        row_group_size: int | None = None,
        use_dictionary: bool | list[str] = True,
        write_statistics: bool | list[str] = True,
        cache: bool = True,
    ) -> StoredFile:
        """Write ``table`` as Parquet at ``rel`` so that readers see all of it or nothing.

        The table's schema metadata becomes the file's key-value metadata. With
        ``exclusive`` the write fails with ObjectExistsError if ``rel`` exists (a retried
        upload that already landed). ``cache=False`` asks a local backend to drop the file's
        pages from this host's page cache once they are on disk.
        """
        options = {
            "compression": compression,
            "compression_level": compression_level,
            "row_group_size": row_group_size,
            "use_dictionary": use_dictionary,
            "write_statistics": write_statistics,
        }
        return self._publish(table, rel, exclusive, options, cache)

    def _publish(
        self, table: pa.Table, rel: str, exclusive: bool, options: dict[str, Any], cache: bool
    ) -> StoredFile:
        """Write ``table`` with ``pq.write_table(**options)``, visible only whole."""
        raise NotImplementedError

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Replace the small object at ``rel`` atomically."""
        raise NotImplementedError

    def read_bytes(self, rel: str) -> bytes | None:
        """Return the bytes at ``rel``, or None if there is no such object."""
        found = self.read_versioned(rel)
        return None if found is None else found[0]

    def read_versioned(self, rel: str) -> tuple[bytes, str] | None:
        """Return the bytes at ``rel`` and their version token (for :meth:`put_if`), or None."""
        raise NotImplementedError

    def put_if(self, rel: str, data: bytes, match: str | None) -> str | None:
        """Write ``data`` at ``rel`` only if ``rel`` is still at version ``match`` (None: only
        if ``rel`` does not exist); return the new version, or None if another writer won.

        Of two writers that read the same version, exactly one wins. A write that landed but
        whose answer was lost (a retried request) is recognised by its bytes and counts as won.
        """
        raise NotImplementedError

    def try_create(self, rel: str, data: bytes) -> bool:
        """Create the small object ``rel`` holding ``data`` unless it exists; True if created."""
        return self.put_if(rel, data, None) is not None

    def stat(self, rel: str) -> StoredFile | None:
        """Return the size and modification time of ``rel``, or None if absent."""
        raise NotImplementedError

    def remove_tree(self, rel_dir: str) -> None:
        """Delete a directory and everything under it; a missing one is not an error."""
        raise NotImplementedError

    def list_files(self, rel_dir: str, suffix: str = ".parquet") -> list[StoredFile]:
        """List files under ``rel_dir`` (recursively) ending in ``suffix``, sorted by path."""
        raise NotImplementedError

    def list_dirs(self, rel_dir: str) -> list[str]:
        """List the names of the directories directly under ``rel_dir``, sorted."""
        raise NotImplementedError

    def move(self, rel: str, dest_rel: str) -> None:
        """Move a file within the warehouse (on S3: copy, then delete the source)."""
        raise NotImplementedError

    def delete(self, rel: str) -> None:
        """Delete one file; a file that is already gone is not an error."""
        raise NotImplementedError

    def delete_many(self, rels: Sequence[str]) -> None:
        """Delete files; ones already gone are not an error."""
        for rel in rels:
            self.delete(rel)
