"""The spool's bytes: its header slots and the record format both processes read and write.

A spool is a header of 64-bit slots followed by a ring of records. Each slot has exactly one
writer, named in its comment: the producer (the server's request path) or the consumer (the
flusher process). Positions count bytes ever written or consumed, so ``write_pos - read_pos``
is what the ring holds and neither position ever wraps.

A record is a fixed header (:data:`REC`) followed, for a :data:`BLOCK`, by the request id and
the model version (UTF-8), padding to 8 bytes, then the float64 numeric features (rows x
features, C order), predictions and, if it has one, scores. A :data:`PAD` record fills the
tail of the ring that a record did not fit in; a tail shorter than :data:`REC` is skipped
implicitly.

A :data:`TEXT` record is a BLOCK followed by string *sections*, one per categorical feature
of the schema in schema order; a :data:`TEXT_IDS` record has one more, the rows' ids (its
request id is then empty and not used). After the scores come every section's lengths, then
every section's bytes::

    int32 lengths[sections][rows]   UTF-8 byte length of each value, -1 for a null
    bytes text                      the non-null values' bytes, section after section,
                                    row after row
    padding to 8 bytes

so the lengths start 8-aligned and the consumer finds each value's bytes from the lengths
alone. Records of a numbers-only schema without row ids stay BLOCKs: strings cost nothing
where there are none.
"""

from __future__ import annotations

import struct

import numpy as np

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

BLOCK, TEXT, PAD, TEXT_IDS = 1, 2, 3, 4  # record kinds
# total length, kind, ts_us, rows, id bytes, version bytes, has score
REC = struct.Struct("<IIqIIII")
HEAD = np.dtype(  # the same header, for reading many records' headers with numpy
    {
        "names": ["size", "kind", "ts", "rows", "id_len", "version_len", "score"],
        "formats": ["<u4", "<u4", "<i8", "<u4", "<u4", "<u4", "<u4"],
        "offsets": [0, 4, 8, 16, 20, 24, 28],
        "itemsize": REC.size,
    }
)


def align(n: int) -> int:
    """``n`` rounded up to a multiple of 8: every record starts 8-aligned."""
    return (n + 7) & ~7
