"""Captured requests as numpy arrays (and string sections, :mod:`ingest.capture._text`): the
check on the request path, and the bulk conversion of many requests (a thread writer's
blocks, a flusher's runs) into Arrow record batches off it (no per-row Python loop)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ingest.capture._text import Strings, split_sections
from ingest.errors import SchemaError
from ingest.schema import META_COLUMNS, OUTPUT_COLUMNS, TS_TYPE, ModelSchema

# One request handed over by LandingWriter.append_block, not Arrow yet:
# (ts_us, rows, request-id prefix, numeric features, prediction, score or None, model
# version, categorical columns or None, row ids or None; the strings encoded as
# ingest.capture._text describes). A plain tuple of numbers, strings, bytes and numpy
# arrays: the garbage collector stops tracking such a tuple at its first pass, so a full
# buffer adds nothing to later collections (a tracked object per buffered request would make
# every full collection walk the whole buffer, a pause on the request path).
Block = tuple


class Run(NamedTuple):
    """Many consecutive requests' rows, as the flusher copies them out of its spool at once:
    per-request ``ts_us``, ``counts``, ``prefixes`` and ``versions``, per-row arrays after.
    ``score`` is None if no request of the run has one; ``categorical`` holds one string
    array per categorical feature, and ``row_ids`` the rows' ids if the requests gave them
    (then ``prefixes`` are not used)."""

    ts_us: np.ndarray
    counts: np.ndarray
    prefixes: pa.StringArray
    versions: pa.StringArray
    features: np.ndarray
    prediction: np.ndarray
    score: np.ndarray | None
    categorical: tuple[pa.StringArray, ...] = ()
    row_ids: pa.StringArray | None = None


_F64 = np.dtype(np.float64)
# Blocks are turned into Arrow batches of about this many rows, so that a large flush (the
# buffer after an outage holds up to max_buffer_rows) converts in bounded pieces, each
# holding the GIL only briefly.
BATCH_ROWS = 8192
_OWN_COLUMNS = frozenset(META_COLUMNS + OUTPUT_COLUMNS)
# Rows of a run transposed per step: 4096 x 30 features stays within a core's L2 cache.
TRANSPOSE_ROWS = 4096


def check_block(
    schema: ModelSchema,
    n_numeric: int,
    features: np.ndarray,
    prediction: np.ndarray,
    score: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Return the arrays as float64 if they are one request's rows for ``schema``.

    ``n_numeric`` is how many numeric features ``schema`` has (callers compute it once):
    ``features`` holds those only. Checked when a block is appended, not at flush: a bad
    block would fail every flush after it.

    Raises
    ------
    SchemaError
        If the shapes do not match.
    """
    n = features.shape[0] if features.ndim == 2 else -1
    if (
        features.shape != (n, n_numeric)
        or prediction.shape != (n,)
        or (score is not None and score.shape != (n,))
    ):
        raise SchemaError(
            f"block for model {schema.model!r} does not match its landing schema: "
            f"expected features of shape (rows, {n_numeric}) (the numeric features, in "
            f"schema order; categorical ones go in categorical=) and one "
            f"prediction (and score) per row; got features {features.shape}, prediction "
            f"{prediction.shape}, score {None if score is None else score.shape}"
        )
    if (
        features.dtype is _F64
        and prediction.dtype is _F64
        and (score is None or score.dtype is _F64)
    ):
        # serving's arrays: a dtype check touches less than asarray, which on the request
        # path is what costs (see ingest.capture._spool.Spool.put_block)
        return features, prediction, score
    return (
        np.asarray(features, np.float64),
        np.asarray(prediction, np.float64),
        None if score is None else np.asarray(score, np.float64),
    )


def to_batches(
    taken: list[tuple[float, pa.RecordBatch | Block]], arrow_schema: pa.Schema, replica: str
) -> list[pa.RecordBatch]:
    """Turn buffered entries into record batches, runs of blocks into ~BATCH_ROWS-row ones."""
    out: list[pa.RecordBatch] = []
    pending: list[Block] = []
    rows = 0
    for _, item in taken:  # a loop over requests, off the request path
        if isinstance(item, tuple):
            pending.append(item)
            rows += item[1]
            if rows >= BATCH_ROWS:
                out.append(blocks_to_batch(pending, arrow_schema, replica))
                pending, rows = [], 0
            continue
        if pending:
            out.append(blocks_to_batch(pending, arrow_schema, replica))
            pending, rows = [], 0
        out.append(item)
    if pending:
        out.append(blocks_to_batch(pending, arrow_schema, replica))
    return out


def blocks_to_batch(blocks: list[Block], arrow_schema: pa.Schema, replica: str) -> pa.RecordBatch:
    """One record batch of many requests' blocks: numpy and Arrow kernels, no row loop."""
    k = len(blocks)
    ts, counts, prefixes, features, predictions, scores, versions, cats, ids = zip(
        *blocks, strict=True
    )
    counts = np.array(counts, np.int64)
    n = int(counts.sum())
    # features x rows in one pass (concatenating the transposed views into a C-ordered
    # array: without ``out`` numpy keeps the views' Fortran order and ravel() copies it
    # all again)
    by_feature = np.empty((features[0].shape[1], n))
    np.concatenate([x.T for x in features], axis=1, out=by_feature)
    nulls = sum(s is None for s in scores)
    if nulls == k:
        score = pa.nulls(n, pa.float64())
    elif nulls == 0:
        score = pa.array(np.concatenate(scores))
    else:
        filled = [
            np.full(c, np.nan) if s is None else s for s, c in zip(scores, counts, strict=True)
        ]
        mask = np.repeat(np.array([s is None for s in scores]), counts)
        score = pa.array(np.concatenate(filled), mask=mask)
    # a schema with categorical features has them in every block, else in none
    if cats[0] is None:
        categorical = ()
    else:
        sections = sum(pa.types.is_dictionary(f.type) for f in arrow_schema)
        categorical = _columns(cats, counts, sections)
    given = k - ids.count(None)
    if given == 0:
        row_ids = None
    else:  # rows of blocks without ids are null: they take their prefix's ids
        if given < k:
            ids = [
                (np.full(c, -1, np.int32).tobytes(), b"") if i is None else i
                for i, c in zip(ids, counts.tolist(), strict=True)
            ]
        (row_ids,) = _columns(ids, counts, 1)
    return _assemble(
        arrow_schema,
        replica,
        np.array(ts, np.int64),
        counts,
        pa.array(prefixes, pa.string()),
        pa.array(versions, pa.string()),
        by_feature,
        np.concatenate(predictions),
        score,
        categorical,
        row_ids,
    )


def _columns(strings: Sequence[Strings], counts: np.ndarray, sections: int) -> tuple:
    """One string array per section of many blocks' strings."""
    lengths = np.frombuffer(b"".join(s[0] for s in strings), np.int32)
    raw = np.frombuffer(b"".join(s[1] for s in strings), np.uint8)
    return split_sections(raw, lengths, counts, sections)


def run_to_batch(run: Run, arrow_schema: pa.Schema, replica: str) -> pa.RecordBatch:
    """The record batch of a :class:`Run` (the rows :func:`blocks_to_batch` would give)."""
    n, n_features = run.features.shape
    # features x rows, in steps that stay in cache (one transposing copy of the whole
    # matrix strides through memory, a cache miss per value)
    by_feature = np.empty((n_features, n))
    for at in range(0, n, TRANSPOSE_ROWS):
        by_feature[:, at : at + TRANSPOSE_ROWS] = run.features[at : at + TRANSPOSE_ROWS].T
    score = pa.nulls(n, pa.float64()) if run.score is None else pa.array(run.score)
    return _assemble(
        arrow_schema,
        replica,
        run.ts_us,
        run.counts,
        run.prefixes,
        run.versions,
        by_feature,
        run.prediction,
        score,
        run.categorical,
        run.row_ids,
    )


def _assemble(
    arrow_schema: pa.Schema,
    replica: str,
    ts_us: np.ndarray,
    counts: np.ndarray,
    prefixes: pa.StringArray,
    versions: pa.StringArray,
    by_feature: np.ndarray,
    prediction: np.ndarray,
    score: pa.Array,
    categorical: Sequence[pa.StringArray] = (),
    row_ids: pa.StringArray | None = None,
) -> pa.RecordBatch:
    """The batch of requests given per request (ts, row counts, id prefixes, versions) and
    per row (numeric features x rows, C-ordered; prediction; score; a string array per
    categorical feature; the ids given, null where a row takes its prefix's)."""
    k, n = len(counts), by_feature.shape[1]
    block_of_row = np.repeat(np.arange(k), counts)
    if row_ids is not None and row_ids.null_count == 0:
        ids = row_ids
    else:
        row_in_block = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
        ids = pc.binary_join_element_wise(
            prefixes.take(block_of_row),
            pa.array(row_in_block).cast(pa.string()),
            "-",
        )
        if row_ids is not None:
            ids = pc.coalesce(row_ids, ids)
    distinct = pc.unique(versions)
    version = pa.repeat(distinct[0], n) if len(distinct) == 1 else versions.take(block_of_row)
    # one Arrow array over all numeric features, then one zero-copy slice per column
    flat = pa.array(by_feature.ravel())
    numeric = [flat.slice(j * n, n) for j in range(by_feature.shape[0])]
    if categorical:  # the features in schema order, categorical ones dictionary-encoded
        columns, cats = iter(numeric), iter(categorical)
        features = [
            next(cats).dictionary_encode() if pa.types.is_dictionary(f.type) else next(columns)
            for f in arrow_schema
            if f.name not in _OWN_COLUMNS
        ]
    else:
        features = numeric
    arrays = [
        pa.array(np.repeat(ts_us, counts), TS_TYPE),
        ids,
        pa.repeat(pa.scalar(replica, pa.string()), n),
        version,
        *features,
        pa.array(prediction),
        score,
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=arrow_schema)
