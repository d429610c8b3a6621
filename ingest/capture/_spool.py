"""A shared-memory ring that carries captured requests from a model server to its flusher.

One producer (the server's request path) and one consumer (the flusher process). The
producer copies a request's arrays into the ring and advances ``write_pos``; the consumer
copies records out and advances ``read_pos``. Neither ever waits for the other, takes a lock
the other holds, or makes a system call, so the request path never shares the GIL with
Parquet encoding (the reason for a process: ingest/capture/process_writer.py).

The ring lives in a ``memfd`` (anonymous shared memory, not bounded by a container's small
``/dev/shm``) that the child inherits as a file descriptor; its header slots and record
format are in :mod:`ingest.capture._spool_layout`. Records never straddle the end of the
ring. The producer writes a record's bytes before it advances ``write_pos``, and the consumer
reads ``write_pos`` before the bytes: correct where one core's stores become visible to
another in program order, which x86-64 guarantees (TSO) and arm64 does not; hence
:func:`ingest.capture.process_writer.process_writer_supported`.

The ring is sized for the flusher's longest stall (a flush on a saturated machine), but most
of the time the flusher empties it several times a second. A copy costs more the more of the
ring it walks (``bench.variants``), so a producer that finds the ring empty at least
REWIND_AT into it starts again at 0, in memory that is still in cache. It records the skip,
from ``skip_from`` to ``skip_to`` (the next lap's start), in the header rather than as a pad
record: the skipped bytes hold nothing, so the producer may fill them again at once, and the
consumer, finding ``read_pos`` at ``skip_from``, jumps. Under a steady stream the ring is
seldom found empty (requests arrive while a take copies): pauses in the traffic bring the
producer back to the front.
"""

from __future__ import annotations

import mmap
import os
import struct

import numpy as np

from ingest.capture import _spool_runs as runs
from ingest.capture._blocks import Run
from ingest.capture._spool_layout import (
    BLOCK,
    HEADER,
    PAD,
    READ_POS,
    REC,
    SKIP_FROM,
    SKIP_TO,
    SKIPPED,
    WRITE_POS,
    align,
)
from ingest.errors import LandingError

REWIND_AT = 1 << 20


class Spool:
    """The ring over ``fd`` of ``capacity`` data bytes; create with :meth:`create`."""

    def __init__(self, fd: int, capacity: int) -> None:
        self.fd = fd
        self.capacity = capacity
        # every page mapped now, not at its first write: see create()
        self._mm = mmap.mmap(fd, HEADER + capacity, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE)
        # a memoryview of uint64: indexing it is several times cheaper than a numpy array's
        self.header = memoryview(self._mm)[:HEADER].cast("Q")
        self._data = memoryview(self._mm)[HEADER:]
        self._heads: dict[tuple[int, int], struct.Struct] = {}

    @classmethod
    def create(cls, capacity: int) -> Spool:
        """A new zeroed ring in a fresh memfd (inheritable, so a child can map it).

        Its memory is allocated here, before the server serves: left to the first lap, each
        page's first write would fault on the request path, and memory a container cannot
        give would fail there as a SIGBUS instead of here.

        Raises LandingError if the memory cannot be allocated.
        """
        capacity = align(capacity)
        fd = os.memfd_create("driftlake-spool", 0)
        try:
            os.ftruncate(fd, HEADER + capacity)
            os.posix_fallocate(fd, 0, HEADER + capacity)
        except OSError as exc:
            os.close(fd)
            raise LandingError(
                f"cannot allocate the {(HEADER + capacity) / 2**20:.1f} MB capture spool in "
                f"memory ({exc.strerror}): give the server more memory or fewer spool rows"
            ) from exc
        os.set_inheritable(fd, True)
        return cls(fd, capacity)

    def close(self) -> None:
        """Unmap and close the descriptor (views handed out must be gone)."""
        self._data.release()
        self.header.release()
        self._mm.close()
        os.close(self.fd)

    def get(self, slot: int) -> int:
        return self.header[slot]

    def set(self, slot: int, value: int) -> None:
        self.header[slot] = value

    def add(self, slot: int, n: int) -> None:
        """Add to a slot only this process writes."""
        self.header[slot] += n

    def used(self) -> int:
        """Bytes written and not yet taken (records, pads and skipped tails)."""
        w = self.header[WRITE_POS]
        return w - self._read_pos(w)

    def written(self) -> int:
        """Bytes ever written, not counting laps left early (see REWIND_AT)."""
        return self.header[WRITE_POS] - self.header[SKIPPED]

    def _read_pos(self, w: int) -> int:
        """``read_pos``, or past the skip that starts there, given a ``write_pos`` read
        before (the producer writes the skip's slots before it advances ``write_pos``)."""
        header = self.header
        r = header[READ_POS]
        if r == header[SKIP_FROM]:
            to = header[SKIP_TO]
            if to <= w:  # else a skip that ``w`` does not include yet
                return to
        return r

    # -- producer -----------------------------------------------------------------------
    def _reserve(self, size: int) -> int | None:
        """Offset where ``size`` bytes can go (after a pad record if needed), or None."""
        header = self.header
        w = header[WRITE_POS]
        r = self._read_pos(w)
        at = w % self.capacity
        if r == w and at >= REWIND_AT:  # empty: start again where the cache still holds
            to = w + self.capacity - at
            header[SKIP_TO] = to
            header[SKIP_FROM] = w
            header[SKIPPED] += to - w
            header[WRITE_POS] = r = w = to
            at = 0
        tail = self.capacity - at
        need = size if tail >= size else tail + size
        if w - r + need > self.capacity:
            return None
        if tail < size:
            if tail >= REC.size:
                REC.pack_into(self._data, at, tail, PAD, 0, 0, 0, 0, 0)
            # a tail shorter than a record header is skipped implicitly by the consumer
            header[WRITE_POS] = w + tail
            return 0
        return at

    def put_block(
        self,
        ts_us: int,
        id_prefix: str,
        features: np.ndarray,
        prediction: np.ndarray,
        score: np.ndarray | None,
        model_version: str,
    ) -> bool:
        """Copy one request's rows in; False (nothing written) if the ring is full.

        The request path, so as few interpreter steps as can be: one ``pack_into`` for the
        header and both strings, and one mmap slice assignment per array (the mmap reads the
        array's buffer directly; a cast memoryview costs several times more).
        """
        rid = id_prefix.encode()
        ver = model_version.encode()
        n, a, b = features.shape[0], len(rid), len(ver)
        head = self._heads.get((a, b)) or self._head(a, b)
        body = align(head.size)
        size = body + features.nbytes + 8 * n * (1 if score is None else 2)
        at = self._reserve(size)
        if at is None:
            return False
        mm = self._mm
        at += HEADER
        head.pack_into(mm, at, size, BLOCK, ts_us, n, a, b, score is not None, rid, ver)
        at += body
        for array in (features, prediction) if score is None else (features, prediction, score):
            end = at + array.nbytes
            try:
                mm[at:end] = array
            except ValueError:  # not C-contiguous (serving never passes such an array)
                mm[at:end] = np.ascontiguousarray(array)
            at = end
        self.header[WRITE_POS] += size
        return True

    def put_text(
        self,
        ts_us: int,
        id_prefix: str,
        features: np.ndarray,
        prediction: np.ndarray,
        score: np.ndarray | None,
        model_version: str,
        kind: int,
        lengths: bytes,
        text: bytes,
    ) -> bool:
        """Copy one request's rows and string sections in, as a ``kind`` (TEXT or TEXT_IDS)
        record: ``lengths`` holds every section's int32 lengths, section after section, and
        ``text`` their bytes (see :mod:`ingest.capture._spool_layout`). False (nothing
        written) if the ring is full."""
        rid = id_prefix.encode()
        ver = model_version.encode()
        n, a, b = features.shape[0], len(rid), len(ver)
        head = self._heads.get((a, b)) or self._head(a, b)
        body = align(head.size)
        numbers = features.nbytes + 8 * n * (1 if score is None else 2)
        size = align(body + numbers + len(lengths) + len(text))
        at = self._reserve(size)
        if at is None:
            return False
        mm = self._mm
        at += HEADER
        head.pack_into(mm, at, size, kind, ts_us, n, a, b, score is not None, rid, ver)
        at += body
        for array in (features, prediction) if score is None else (features, prediction, score):
            end = at + array.nbytes
            try:
                mm[at:end] = array
            except ValueError:  # not C-contiguous
                mm[at:end] = np.ascontiguousarray(array)
            at = end
        end = at + len(lengths)
        mm[at:end] = lengths
        mm[end : end + len(text)] = text
        self.header[WRITE_POS] += size
        return True

    def _head(self, id_len: int, version_len: int) -> struct.Struct:
        """The record header followed by an id and a version of these lengths."""
        if len(self._heads) >= 64:  # lengths a caller varies without bound: stay small
            self._heads.clear()
        head = self._heads[id_len, version_len] = struct.Struct(
            f"{REC.format}{id_len}s{version_len}s"
        )
        return head

    # -- consumer -----------------------------------------------------------------------
    def first_ts(self) -> int | None:
        """``ts_us`` of the first record not yet taken, or None if the ring is empty: when
        the oldest unread row was accepted."""
        w = self.header[WRITE_POS]
        r = self._read_pos(w)
        while r < w:
            at = r % self.capacity
            if self.capacity - at < REC.size:  # a skipped tail
                r += self.capacity - at
                continue
            size, kind, ts_us = REC.unpack_from(self._data, at)[:3]
            if kind != PAD:
                return ts_us
            r += size
        return None

    def take(self, n_features: int, n_categorical: int = 0) -> list[Run]:
        """Copy out every record written so far and advance ``read_pos`` past them.

        ``n_features`` is the schema's numeric features, ``n_categorical`` its categorical
        ones (a TEXT record's sections). Consecutive records of one kind come as one
        :class:`Run` (split where requests with and without a score meet), copied with a few
        numpy calls however many requests it holds.
        """
        data, capacity, unpack = self._data, self.capacity, REC.unpack_from
        w = self.header[WRITE_POS]
        r = self._read_pos(w)
        out: list[Run] = []
        blocks: list[tuple] = []  # the run so far: (ts, rows, offset, id and version length)
        has_score = 0
        run_kind = BLOCK
        while r < w:
            at = r % capacity
            if capacity - at < REC.size:
                r += capacity - at
                continue
            size, kind, ts_us, n, a, b, score = unpack(data, at)
            r += size
            if blocks and (kind != run_kind or score != has_score):
                out.append(
                    runs.decode(data, blocks, has_score, n_features, run_kind, n_categorical)
                )
                blocks = []
            if kind == BLOCK:
                blocks.append((ts_us, n, at, a, b))
                has_score, run_kind = score, kind
                # most often the records that follow have this one's shape: read them at once
                same = runs.alike(data, at, size, a, b, score, min(w - r, capacity - at - size))
                if same is not None:
                    blocks.append(same)
                    r += size * len(same[0])
            elif kind != PAD:  # TEXT or TEXT_IDS: sizes vary with the strings, one by one
                blocks.append((ts_us, n, at, a, b))
                has_score, run_kind = score, kind
        if blocks:
            out.append(runs.decode(data, blocks, has_score, n_features, run_kind, n_categorical))
        # only now: until here the producer must not overwrite what was being copied
        self.header[READ_POS] = r
        return out
