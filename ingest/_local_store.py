"""The warehouse on a local (or mounted) filesystem: staging, fdatasync and rename."""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ingest import paths
from ingest.errors import LandingError, ObjectExistsError
from ingest.storage import StoredFile, Warehouse


class LocalWarehouse(Warehouse):
    """A warehouse root directory; see :class:`ingest.storage.Warehouse`."""

    def __init__(self, url: str | os.PathLike[str]) -> None:
        url = os.fspath(url)
        self.root = str(Path(url.removeprefix("file://")).expanduser().resolve())
        self.url = url
        self.fs: pafs.FileSystem = pafs.LocalFileSystem()
        try:
            self.fs.create_dir(self.root, recursive=True)
        except OSError as exc:
            raise LandingError(f"cannot create warehouse root {self.root}: {exc}") from exc

    def __repr__(self) -> str:
        return f"Warehouse({self.root!r})"

    def uri(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def open_input(self, rel: str, whole: bool = False) -> str:
        return self.uri(rel)

    def _staging_file(self, rel: str) -> str:
        name = rel.replace("/", "__")[-120:]
        return self.uri(f"{paths.STAGING}/{uuid.uuid4().hex[:12]}-{name}.tmp")

    def _publish(
        self, table: pa.Table, rel: str, exclusive: bool, options: dict[str, Any], cache: bool
    ) -> StoredFile:
        # the temp file lives under _staging/ (outside every scanned tree, same volume) and is
        # made durable before it is moved into place: after a crash a published file is
        # whole, and compaction deletes its sources only once what supersedes them is on disk
        tmp = self._staging_file(rel)
        dest = self.uri(rel)
        try:
            os.makedirs(os.path.dirname(tmp), exist_ok=True)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            pq.write_table(table, tmp, **options)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                _make_durable(fd, cache)
            finally:
                os.close(fd)
            if exclusive:
                os.link(tmp, dest)
                os.unlink(tmp)
            else:
                os.replace(tmp, dest)
        except FileExistsError:
            self._discard(tmp)
            raise ObjectExistsError(rel) from None
        except OSError as exc:
            self._discard(tmp)
            raise LandingError(f"cannot publish {rel}: {exc}") from exc
        st = os.stat(dest)
        return StoredFile(rel, st.st_size, st.st_mtime_ns)

    def _write_durable(self, rel: str, data: bytes) -> str:
        tmp = self._staging_file(rel)
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        os.makedirs(os.path.dirname(self.uri(rel)), exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            _make_durable(fh.fileno(), cache=True)
        return tmp

    def write_bytes(self, rel: str, data: bytes) -> None:
        tmp = ""
        try:
            tmp = self._write_durable(rel, data)
            os.replace(tmp, self.uri(rel))
        except OSError as exc:
            if tmp:
                self._discard(tmp)
            raise LandingError(f"cannot write {rel}: {exc}") from exc

    def read_versioned(self, rel: str) -> tuple[bytes, str] | None:
        try:
            with open(self.uri(rel), "rb") as fh:
                return fh.read(), _version(os.fstat(fh.fileno()))
        except FileNotFoundError:
            return None

    @contextmanager
    def _cas(self) -> Iterator[None]:
        # every conditional write of this warehouse serialises on one flock: the version
        # check and the rename must not interleave with another conditional writer's
        lock = self.uri(f"{paths.STAGING}/.conditional-writes.lock")
        os.makedirs(os.path.dirname(lock), exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def put_if(self, rel: str, data: bytes, match: str | None) -> str | None:
        dest = self.uri(rel)
        try:
            with self._cas():
                try:
                    current: str | None = _version(os.stat(dest))
                except FileNotFoundError:
                    current = None
                if current != match:
                    return None
                tmp = self._write_durable(rel, data)
                os.replace(tmp, dest)
                return _version(os.stat(dest))
        except OSError as exc:
            raise LandingError(f"cannot write {rel}: {exc}") from exc

    def stat(self, rel: str) -> StoredFile | None:
        info = self.fs.get_file_info(self.uri(rel))
        if info.type != pafs.FileType.File:
            return None
        return StoredFile(rel, info.size, info.mtime_ns or 0)

    def remove_tree(self, rel_dir: str) -> None:
        try:
            self.fs.delete_dir(self.uri(rel_dir))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise LandingError(f"cannot delete {rel_dir}: {exc}") from exc

    def list_files(self, rel_dir: str, suffix: str = ".parquet") -> list[StoredFile]:
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
        sel = pafs.FileSelector(self.uri(rel_dir), recursive=False, allow_not_found=True)
        return sorted(
            i.base_name for i in self.fs.get_file_info(sel) if i.type == pafs.FileType.Directory
        )

    def move(self, rel: str, dest_rel: str) -> None:
        dest = self.uri(dest_rel)
        try:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.replace(self.uri(rel), dest)
        except OSError as exc:
            raise LandingError(f"cannot move {rel} to {dest_rel}: {exc}") from exc

    def delete(self, rel: str) -> None:
        self._discard(self.uri(rel))

    def _discard(self, absolute: str) -> None:
        with suppress(FileNotFoundError):
            os.unlink(absolute)


def _version(st: os.stat_result) -> str:
    # a replace is a rename of a new file: a new inode, so the token changes even when the
    # size and the mtime's resolution would not tell two writes apart
    return f"{st.st_ino}-{st.st_mtime_ns}-{st.st_size}"


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
