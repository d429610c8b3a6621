"""Copying runs of block records out of the spool's bytes with a few numpy calls per run.

The consumer side of the spool, off the request path: however many requests a run holds, its
ids, versions, features, predictions, scores and string sections are gathered with vectorized
index arithmetic, never a Python loop over requests or rows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ingest.capture._blocks import Run
from ingest.capture._spool_layout import BLOCK, HEAD, REC, TEXT_IDS
from ingest.capture._text import gather, split_sections

ALIKE_MIN = 8  # fewer alike records than this are cheaper to read one by one


def alike(
    data: memoryview, at: int, size: int, id_len: int, version_len: int, score: int, span: int
) -> tuple[np.ndarray, ...] | None:
    """The blocks right after the one at ``at`` that have its size, id and version lengths
    and score flag (so its row count too), within the ``span`` bytes that follow it without
    wrapping: (ts, rows, offset, id length, version length) arrays, or None if fewer than
    :data:`ALIKE_MIN` follow. Their headers are read with numpy, not one ``unpack`` each."""
    k = span // size
    if k < ALIKE_MIN:
        return None
    heads = np.ndarray((k,), HEAD, data, at + size, (size,))
    same = (
        (heads["size"] == size)
        & (heads["kind"] == BLOCK)
        & (heads["id_len"] == id_len)
        & (heads["version_len"] == version_len)
        & (heads["score"] == score)
    )
    m = k if same.all() else int(same.argmin())
    if m < ALIKE_MIN:
        return None
    heads = heads[:m]
    return (
        heads["ts"].astype(np.int64),
        heads["rows"].astype(np.int64),
        at + size * np.arange(1, m + 1, dtype=np.int64),
        np.full(m, id_len, np.int64),
        np.full(m, version_len, np.int64),
    )


def decode(
    data: memoryview,
    blocks: list[tuple],
    has_score: int,
    n_features: int,
    kind: int = BLOCK,
    n_categorical: int = 0,
) -> Run:
    """The :class:`Run` of consecutive records of one ``kind``: ``blocks`` holds, in ring
    order, one record's (ts, rows, offset, id length, version length) or :func:`alike`'s
    arrays. ``n_features`` numeric features; a TEXT record has ``n_categorical`` string
    sections, a TEXT_IDS record one more (the row ids)."""
    ts, counts, at, id_len, version_len = _columns(blocks)
    raw = np.frombuffer(data, np.uint8)
    numbers = np.frombuffer(data, np.float64)
    ids = _strings(raw, at + REC.size, id_len)
    versions = _strings(raw, at + REC.size + id_len, version_len)
    starts = (at + REC.size + id_len + version_len + 7) // 8  # records are 8-aligned
    features = gather(numbers, starts, counts * n_features)
    starts += counts * n_features
    prediction = gather(numbers, starts, counts)
    score = gather(numbers, starts + counts, counts) if has_score else None
    features = features.reshape(len(prediction), n_features)
    if kind == BLOCK:
        return Run(ts, counts, ids, versions, features, prediction, score)
    sections = n_categorical + (kind == TEXT_IDS)
    ends = 8 * (starts + counts * (2 if has_score else 1))  # where each record's numbers end
    texts = _sections(data, raw, ends, counts, sections)
    row_ids = texts[n_categorical] if kind == TEXT_IDS else None
    return Run(
        ts, counts, ids, versions, features, prediction, score, texts[:n_categorical], row_ids
    )


def _sections(
    data: memoryview, raw: np.ndarray, at: np.ndarray, counts: np.ndarray, sections: int
) -> tuple[pa.StringArray, ...]:
    """The string sections of TEXT records whose sections start at byte offsets ``at``:
    one array per section, of every record's rows in ring order."""
    per = counts * sections
    lengths = gather(np.frombuffer(data, np.int32), at // 4, per)  # 8-aligned: exact
    return split_sections(raw, lengths, counts, sections, at + 4 * per)


def _columns(blocks: list[tuple]) -> np.ndarray:
    """Five int64 rows (ts, rows, offset, id length, version length) from a run's blocks."""
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


def _strings(raw: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> pa.StringArray:
    """The UTF-8 strings at ``raw[s : s + l]`` as one Arrow array, without a Python loop."""
    offsets = np.zeros(len(lengths) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    text = gather(raw, starts, lengths) if offsets[-1] else np.zeros(0, np.uint8)
    return pa.StringArray.from_buffers(len(lengths), pa.py_buffer(offsets), pa.py_buffer(text))
