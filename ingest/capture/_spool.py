"""A shared-memory ring that carries captured requests from a model server to its flusher.

One producer (the server's request path) and one consumer (the flusher process). The
producer copies a request's arrays into the ring and advances ``write_pos``; the consumer
copies records out and advances ``read_pos``. Neither ever waits for the other, takes a lock
the other holds, or makes a system call: the request path never shares the GIL with
Parquet encoding (see ingest/capture/process_writer.py for why that matters).

The ring lives in a ``memfd`` (anonymous shared memory, not bounded by a container's small
``/dev/shm``) that the child inherits as a file descriptor. Positions and counters are
64-bit slots in a header; each slot has exactly one writer. Records never straddle the end
of the ring: one that does not fit there is preceded by a pad record and starts at 0. The
producer writes a record's bytes before it advances ``write_pos``, and the consumer reads
``write_pos`` before the bytes: correct where one core's stores become visible to another
in program order, which x86-64 guarantees (TSO) and arm64 does not; hence
:func:`ingest.capture.process_writer.process_writer_supported`.

The ring is sized for the flusher's longest stall (a flush on a saturated machine), but
most of the time the flusher takes everything several times a second. So a producer that
finds the ring empty at least REWIND_AT into it starts again at 0, in memory that is still
in cache, not the rest of a 70 MB lap (put_block in a loop: 1.6 us with a 1.3 MB ring,
2.5 us with 64 MB; in a loaded server, with looks every 2 MB, the server's CPU a request
fell from 0.430 to 0.402 ms, BENCHMARKS.md session 9). It records
the skip, from ``skip_from`` to ``skip_to`` (the next lap's start), in the header rather
than as a pad record: the skipped bytes hold nothing, so the producer may fill them again
at once, and the consumer, finding ``read_pos`` at ``skip_from``, jumps. Under a steady
stream it seldom finds the ring empty (requests arrive while a take copies): at 32 rows x 32
connections about once a lap (BENCHMARKS.md session 10), so it is pauses in the traffic that
bring it back to the front.
"""

from __future__ import annotations

import mmap
import os
import struct

import numpy as np
import pyarrow as pa

from ingest.capture._blocks import Run
from ingest.errors import LandingError

# header slots (uint64); the comment names the only process that writes each
WRITE_POS = 0  # producer: bytes ever written
READ_POS = 1  # consumer: bytes ever consumed
CAPTURED = 2  # producer: rows put into the ring
RING_DROPPED = 3  # producer: rows not put because the ring was full
TAKEN = 4  # consumer: rows taken out of the ring
FLUSHED = 5  # consumer: rows published
FILES = 6  # consumer
FAILURES = 7  # consumer: failed flush attempts
DROPPED = 8  # consumer: rows its own buffer bound dropped
LAST_FLUSH_NS = 9  # consumer: duration of the last flush
OLDEST_NS = 10  # consumer: CLOCK_MONOTONIC ns of its oldest unpublished row, 0 if none
FLUSH_REQUEST = 11  # producer: a counter; the consumer publishes everything and echoes it
FLUSH_DONE = 12  # consumer: the last FLUSH_REQUEST served
FLUSH_ERRORS = 13  # consumer: FLUSH_REQUESTs that ended with rows unpublished
STOP = 14  # producer: nonzero = publish everything and exit, retrying for this many ms
READY = 15  # consumer: its pid, once it has mapped the ring and is about to take records
SKIP_FROM = 16  # producer: where it last left the ring empty to start again at 0 ...
SKIP_TO = 17  # producer: ... which is here (written before SKIP_FROM, both before WRITE_POS)
SKIPPED = 18  # producer: bytes ever skipped that way
SLOTS = 24
HEADER = SLOTS * 8

BLOCK, ARROW, PAD = 1, 2, 3
# total length, kind, ts_us, rows, id bytes, version bytes (or IPC bytes), has score
_REC = struct.Struct("<IIqIIII")
_HEAD = np.dtype(  # the same header, for reading many records' headers with numpy
    {
        "names": ["size", "kind", "ts", "rows", "id_len", "version_len", "score"],
        "formats": ["<u4", "<u4", "<i8", "<u4", "<u4", "<u4", "<u4"],
        "offsets": [0, 4, 8, 16, 20, 24, 28],
        "itemsize": _REC.size,
    }
)
_ALIKE_MIN = 8  # fewer alike records than this are cheaper to read one by one
REWIND_AT = 1 << 20


def _align(n: int) -> int:
    return (n + 7) & ~7


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
        page's first write faulted on the request path (a put 7.5 us instead of 2.9 in a
        loop; in a loaded server the first ~6 s of traffic ran 25% slower, BENCHMARKS.md
        session 10), and memory a container cannot give fails here, not as a SIGBUS there.

        Raises LandingError if the memory cannot be allocated.
        """
        capacity = _align(capacity)
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

    def add(self, slot: int, n: int) -> None:
        """Add to a slot only this process writes."""
        self.header[slot] += n

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
            if tail >= _REC.size:
                _REC.pack_into(self._data, at, tail, PAD, 0, 0, 0, 0, 0)
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
        array's buffer directly: ~70 ns, where a cast memoryview costs ~350 ns). Measured
        inside a loaded server, every step here costs 3-5x what a loop of it does alone.
        """
        rid = id_prefix.encode()
        ver = model_version.encode()
        n, a, b = features.shape[0], len(rid), len(ver)
        head = self._heads.get((a, b)) or self._head(a, b)
        body = _align(head.size)
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

    def _head(self, id_len: int, version_len: int) -> struct.Struct:
        """The record header followed by an id and a version of these lengths."""
        if len(self._heads) >= 64:  # lengths a caller varies without bound: stay small
            self._heads.clear()
        head = self._heads[id_len, version_len] = struct.Struct(
            f"{_REC.format}{id_len}s{version_len}s"
        )
        return head

    def put_arrow(self, batch: pa.RecordBatch) -> bool:
        """Copy a record batch in (Arrow IPC); False (nothing written) if the ring is full."""
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as stream:
            stream.write_batch(batch)
        ipc = sink.getvalue()
        size = _align(_REC.size + ipc.size)
        at = self._reserve(size)
        if at is None:
            return False
        _REC.pack_into(self._data, at, size, ARROW, 0, batch.num_rows, ipc.size, 0, 0)
        self._data[at + _REC.size : at + _REC.size + ipc.size] = memoryview(ipc).cast("B")
        self.set(WRITE_POS, self.get(WRITE_POS) + size)
        return True

    # -- consumer -----------------------------------------------------------------------
    def first_ts(self) -> int | None:
        """``ts_us`` of the first record not yet taken (0 for an Arrow record, which carries
        none), or None if the ring is empty: when the oldest unread row was accepted."""
        w = self.header[WRITE_POS]
        r = self._read_pos(w)
        while r < w:
            at = r % self.capacity
            if self.capacity - at < _REC.size:  # a skipped tail
                r += self.capacity - at
                continue
            size, kind, ts_us = _REC.unpack_from(self._data, at)[:3]
            if kind != PAD:
                return ts_us
            r += size
        return None

    def take(self, n_features: int) -> list[Run | pa.RecordBatch]:
        """Copy out every record written so far and advance ``read_pos`` past them.

        Consecutive blocks come as one :class:`Run` (split where requests with and without
        a score meet), copied with a few numpy calls however many requests it holds; an
        Arrow record comes as its ``pa.RecordBatch``.
        """
        data, capacity, unpack = self._data, self.capacity, _REC.unpack_from
        w = self.header[WRITE_POS]
        r = self._read_pos(w)
        out: list[Run | pa.RecordBatch] = []
        blocks: list[tuple] = []  # the run so far: (ts, rows, offset, id and version length)
        has_score = 0
        while r < w:
            at = r % capacity
            if capacity - at < _REC.size:
                r += capacity - at
                continue
            size, kind, ts_us, n, a, b, score = unpack(data, at)
            r += size
            if blocks and (kind != BLOCK or score != has_score):
                out.append(self._run(blocks, has_score, n_features))
                blocks = []
            if kind == BLOCK:
                blocks.append((ts_us, n, at, a, b))
                has_score = score
                # most often the records that follow have this one's shape: read them at once
                alike = self._alike(at, size, a, b, score, min(w - r, capacity - at - size))
                if alike is not None:
                    blocks.append(alike)
                    r += size * len(alike[0])
            elif kind == ARROW:
                ipc = pa.py_buffer(bytes(data[at + _REC.size : at + _REC.size + a]))
                out.append(pa.ipc.open_stream(ipc).read_next_batch())
        if blocks:
            out.append(self._run(blocks, has_score, n_features))
        # only now: until here the producer must not overwrite what was being copied
        self.header[READ_POS] = r
        return out

    def _alike(
        self, at: int, size: int, id_len: int, version_len: int, score: int, span: int
    ) -> tuple[np.ndarray, ...] | None:
        """The blocks right after the one at ``at`` that have its size, id and version
        lengths and score flag (so its row count too), within the ``span`` bytes that
        follow it without wrapping: (ts, rows, offset, id length, version length) arrays,
        or None if fewer than ``_ALIKE_MIN`` follow. Their headers are read with numpy,
        not one ``unpack`` each (~1 us per one-row request)."""
        k = span // size
        if k < _ALIKE_MIN:
            return None
        heads = np.ndarray((k,), _HEAD, self._data, at + size, (size,))
        same = (
            (heads["size"] == size)
            & (heads["kind"] == BLOCK)
            & (heads["id_len"] == id_len)
            & (heads["version_len"] == version_len)
            & (heads["score"] == score)
        )
        m = k if same.all() else int(same.argmin())
        if m < _ALIKE_MIN:
            return None
        heads = heads[:m]
        return (
            heads["ts"].astype(np.int64),
            heads["rows"].astype(np.int64),
            at + size * np.arange(1, m + 1, dtype=np.int64),
            np.full(m, id_len, np.int64),
            np.full(m, version_len, np.int64),
        )

    def _run(self, blocks: list[tuple], has_score: int, n_features: int) -> Run:
        ts, counts, at, id_len, version_len = _columns(blocks)
        raw = np.frombuffer(self._data, np.uint8)
        numbers = np.frombuffer(self._data, np.float64)
        ids = _strings(raw, at + _REC.size, id_len)
        versions = _strings(raw, at + _REC.size + id_len, version_len)
        starts = (at + _REC.size + id_len + version_len + 7) // 8  # records are 8-aligned
        features = _gather(numbers, starts, counts * n_features)
        starts += counts * n_features
        prediction = _gather(numbers, starts, counts)
        score = _gather(numbers, starts + counts, counts) if has_score else None
        return Run(ts, counts, ids, versions, features.reshape(-1, n_features), prediction, score)


def _columns(blocks: list[tuple]) -> np.ndarray:
    """Five int64 rows (ts, rows, offset, id length, version length) from a run's blocks:
    tuples of one record's numbers, or of arrays from :meth:`Spool._alike`, in ring order."""
    parts, single = [], []
    for block in blocks:
        if isinstance(block[0], np.ndarray):
            if single:
                parts.append(np.array(single, np.int64).T)
                single = []
            parts.append(np.stack(block))
        else:
            single.append(block)
    if single:
        parts.append(np.array(single, np.int64).T)
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def _gather(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """A copy of ``values[s : s + l]`` for each start and length, concatenated."""
    if lengths.mean() >= 256:  # long pieces: slicing each beats an index per value
        return np.concatenate(
            [values[s : s + n] for s, n in zip(starts.tolist(), lengths.tolist(), strict=True)]
        )
    ends = np.cumsum(lengths)
    return values[np.arange(ends[-1]) + np.repeat(starts - (ends - lengths), lengths)]


def _strings(raw: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> pa.StringArray:
    """The UTF-8 strings at ``raw[s : s + l]`` as one Arrow array, without a Python loop."""
    offsets = np.zeros(len(lengths) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    text = _gather(raw, starts, lengths) if offsets[-1] else np.zeros(0, np.uint8)
    return pa.StringArray.from_buffers(len(lengths), pa.py_buffer(offsets), pa.py_buffer(text))
