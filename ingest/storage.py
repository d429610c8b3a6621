"""The warehouse's storage seam: every landing, history and state byte goes through here.

The warehouse is named by a URL (a plain path or ``file://`` by default). Everything else
in driftlake asks this module for files; only here do we know that publishing on a local
filesystem is write-to-staging + rename, so an object store can replace it later.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ingest import paths
from ingest.errors import ConfigError, LandingError


@dataclass(frozen=True)
class StoredFile:
    """A file in the warehouse: path relative to the root, size and modification time."""

    path: str
    size: int
    mtime_ns: int


class Warehouse:
    """A warehouse root on a filesystem.

    Parameters
    ----------
    url
        ``/some/dir``, ``./warehouse`` or ``file:///some/dir``. The directory is created.

    Example
    -------
    >>> wh = Warehouse("/tmp/wh-doc")
    >>> wh.uri("landing")
    '/tmp/wh-doc/landing'
    """

    def __init__(self, url: str | os.PathLike[str]) -> None:
        url = os.fspath(url)
        if "://" in url and not url.startswith("file://"):
            raise ConfigError(
                f"warehouse URL {url!r} is not supported yet: expected a local path or file:// URL"
            )
        root = url.removeprefix("file://")
        self.root = str(Path(root).expanduser().resolve())
        self.url = url
        self.fs: pafs.FileSystem = pafs.LocalFileSystem()
        try:
            self.fs.create_dir(self.root, recursive=True)
        except OSError as exc:
            raise LandingError(f"cannot create warehouse root {self.root}: {exc}") from exc

    def __repr__(self) -> str:
        return f"Warehouse({self.root!r})"

    def __reduce__(self):  # pickles by URL so Dask workers open the same warehouse
        return (Warehouse, (self.url,))

    def uri(self, rel: str) -> str:
        """Return the absolute location of ``rel`` (a path Polars, pyarrow and DuckDB read)."""
        return f"{self.root}/{rel}" if rel else self.root

    def _staging_file(self, rel: str) -> str:
        name = rel.replace("/", "__")[-120:]
        return self.uri(f"{paths.STAGING}/{uuid.uuid4().hex[:12]}-{name}.tmp")

    def publish_table(
        self,
        table: pa.Table,
        rel: str,
        *,
        compression: str = "zstd",
        compression_level: int | None = 1,
        row_group_size: int | None = None,
        use_dictionary: bool | list[str] = True,
        write_statistics: bool | list[str] = True,
        cache: bool = True,
    ) -> StoredFile:
        """Write ``table`` as Parquet at ``rel`` so that readers see all of it or nothing.

        The temp file lives under ``_staging/`` (outside every scanned tree, same volume),
        is made durable (fdatasync: after a crash a published file is whole, and compaction
        deletes its sources only once what supersedes them is on disk) and is moved into
        place with an atomic rename. The table's schema metadata becomes the file's
        key-value metadata. With ``cache=False`` the file's pages leave this host's page
        cache once they are on disk (see :func:`_make_durable`).
        """
        tmp = self._staging_file(rel)
        dest = self.uri(rel)
        try:
            self.fs.create_dir(os.path.dirname(tmp), recursive=True)
            self.fs.create_dir(os.path.dirname(dest), recursive=True)
            pq.write_table(
                table,
                tmp,
                compression=compression,
                compression_level=compression_level,
                row_group_size=row_group_size,
                use_dictionary=use_dictionary,
                write_statistics=write_statistics,
                filesystem=self.fs,
            )
            fd = os.open(tmp, os.O_RDONLY)
            try:
                _make_durable(fd, cache)
            finally:
                os.close(fd)
            self.fs.move(tmp, dest)
        except OSError as exc:
            self._discard(tmp)
            raise LandingError(f"cannot publish {rel}: {exc}") from exc
        info = self.fs.get_file_info(dest)
        return StoredFile(rel, info.size, info.mtime_ns or 0)

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Replace the small object at ``rel`` atomically (write temp, fdatasync, rename)."""
        tmp = self._staging_file(rel)
        dest = self.uri(rel)
        try:
            os.makedirs(os.path.dirname(tmp), exist_ok=True)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                _make_durable(fh.fileno(), cache=True)
            os.replace(tmp, dest)
        except OSError as exc:
            self._discard(tmp)
            raise LandingError(f"cannot write {rel}: {exc}") from exc

    def read_bytes(self, rel: str) -> bytes | None:
        """Return the bytes at ``rel``, or None if there is no such file."""
        try:
            with open(self.uri(rel), "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def try_create(self, rel: str, data: bytes) -> bool:
        """Create the small object ``rel`` holding ``data`` unless it exists; True if created.

        Atomic and exclusive: the bytes are written to staging and hard-linked into place,
        which fails if ``rel`` exists, so of two concurrent callers exactly one wins.
        """
        tmp = self._staging_file(rel)
        dest = self.uri(rel)
        try:
            os.makedirs(os.path.dirname(tmp), exist_ok=True)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.link(tmp, dest)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            raise LandingError(f"cannot create {rel}: {exc}") from exc
        finally:
            self._discard(tmp)

    def stat(self, rel: str) -> StoredFile | None:
        """Return the size and modification time of the file ``rel``, or None if absent."""
        info = self.fs.get_file_info(self.uri(rel))
        if info.type != pafs.FileType.File:
            return None
        return StoredFile(rel, info.size, info.mtime_ns or 0)

    def remove_tree(self, rel_dir: str) -> None:
        """Delete a directory and everything under it; a missing directory is not an error."""
        try:
            self.fs.delete_dir(self.uri(rel_dir))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise LandingError(f"cannot delete {rel_dir}: {exc}") from exc

    def list_files(self, rel_dir: str, suffix: str = ".parquet") -> list[StoredFile]:
        """List files under ``rel_dir`` (recursively) ending in ``suffix``, sorted by path."""
        sel = pafs.FileSelector(self.uri(rel_dir), recursive=True, allow_not_found=True)
        prefix = len(self.root) + 1
        out = [
            StoredFile(i.path[prefix:], i.size, i.mtime_ns or 0)
            for i in self.fs.get_file_info(sel)
            if i.type == pafs.FileType.File and i.path.endswith(suffix)
        ]
        out.sort(key=lambda f: f.path)
        return out

    def list_dirs(self, rel_dir: str) -> list[str]:
        """List the names of the directories directly under ``rel_dir``, sorted."""
        sel = pafs.FileSelector(self.uri(rel_dir), recursive=False, allow_not_found=True)
        return sorted(
            i.base_name for i in self.fs.get_file_info(sel) if i.type == pafs.FileType.Directory
        )

    def move(self, rel: str, dest_rel: str) -> None:
        """Move a file within the warehouse (an atomic rename on one volume)."""
        dest = self.uri(dest_rel)
        try:
            self.fs.create_dir(os.path.dirname(dest), recursive=True)
            self.fs.move(self.uri(rel), dest)
        except OSError as exc:
            raise LandingError(f"cannot move {rel} to {dest_rel}: {exc}") from exc

    def delete(self, rel: str) -> None:
        """Delete one file; a file that is already gone is not an error."""
        self._discard(self.uri(rel))

    def _discard(self, absolute: str) -> None:
        try:
            self.fs.delete_file(absolute)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if "not exist" not in str(exc).lower() and "no such file" not in str(exc).lower():
                raise


def _make_durable(fd: int, cache: bool) -> None:
    """fdatasync the file open as ``fd``, then unless ``cache`` drop its (now clean) pages.

    A replica's landing files are what its host writes most and reads least: analytics
    reads each once, seconds later, usually on another host. Kept, they grow the page cache
    without bound, charged to the server's container, whose own allocations must then
    reclaim it; and on a VM that reports free pages to its host, every new page-cache page
    costs a host fault (the flusher's system time: ``bench.variants``).
    """
    os.fdatasync(fd)
    if not cache:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
