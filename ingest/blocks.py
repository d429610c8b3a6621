"""Captured requests as numpy blocks: the check on the request path, and the bulk conversion
of many blocks into Arrow record batches at flush time (no per-row Python loop)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ingest.errors import SchemaError
from ingest.schema import TS_TYPE, ModelSchema

# One request handed over by LandingWriter.append_block, not Arrow yet:
# (ts_us, rows, request-id prefix, features, prediction, score or None, model version).
# A plain tuple of numbers, strings and numpy arrays: the garbage collector stops tracking
# such a tuple at its first pass, so a full buffer adds nothing to later collections (a
# tracked object per buffered request made every full collection walk the whole buffer;
# one took ~70 ms and showed as p99 latency).
Block = tuple
# Blocks are turned into Arrow batches of about this many rows, so that a large flush (the
# buffer after an outage holds up to max_buffer_rows) converts in bounded pieces: ~1 ms of
# GIL-holding numpy work per piece for 32-row requests, ~8 ms for one-row requests.
RUN_ROWS = 8192


def check_block(
    schema: ModelSchema,
    numeric: bool,
    features: np.ndarray,
    prediction: np.ndarray,
    score: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Return the arrays as float64 if they are one request's rows for ``schema``.

    ``numeric`` says whether every feature of ``schema`` is numeric (callers compute it
    once). Checked when a block is appended, not at flush: a bad block would fail every
    flush after it.

    Raises
    ------
    SchemaError
        If the schema has a categorical feature or the shapes do not match.
    """
    n_features = len(schema.features)
    n = features.shape[0] if features.ndim == 2 else -1
    if (
        not numeric
        or features.shape != (n, n_features)
        or prediction.shape != (n,)
        or (score is not None and score.shape != (n,))
    ):
        raise SchemaError(
            f"block for model {schema.model!r} does not match its landing schema: "
            f"expected features of shape (rows, {n_features}) (numeric features "
            f"only) and one prediction (and score) per row; got features "
            f"{features.shape}, prediction {prediction.shape}, score "
            f"{None if score is None else score.shape}. Categorical schemas use append()"
        )
    # no-ops for the float64 arrays serving passes; other numbers are converted here
    return (
        np.asarray(features, np.float64),
        np.asarray(prediction, np.float64),
        None if score is None else np.asarray(score, np.float64),
    )


def to_batches(
    taken: list[tuple[float, pa.RecordBatch | Block]], arrow_schema: pa.Schema, replica: str
) -> list[pa.RecordBatch]:
    """Turn buffered entries into record batches, runs of blocks into ~RUN_ROWS-row ones."""
    out: list[pa.RecordBatch] = []
    run: list[Block] = []
    rows = 0
    for _, item in taken:  # a loop over requests, off the request path
        if isinstance(item, tuple):
            run.append(item)
            rows += item[1]
            if rows >= RUN_ROWS:
                out.append(blocks_to_batch(run, arrow_schema, replica))
                run, rows = [], 0
            continue
        if run:
            out.append(blocks_to_batch(run, arrow_schema, replica))
            run, rows = [], 0
        out.append(item)
    if run:
        out.append(blocks_to_batch(run, arrow_schema, replica))
    return out


def blocks_to_batch(blocks: list[Block], arrow_schema: pa.Schema, replica: str) -> pa.RecordBatch:
    """One record batch of many requests' blocks: numpy and Arrow kernels, no row loop."""
    k = len(blocks)
    ts, counts, prefixes, features, predictions, scores, versions = zip(*blocks, strict=True)
    counts = np.array(counts, np.int64)
    n = int(counts.sum())
    n_features = features[0].shape[1]
    block_of_row = np.repeat(np.arange(k), counts)
    row_in_block = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
    ids = pc.binary_join_element_wise(
        pa.array(prefixes, pa.string()).take(block_of_row),
        pa.array(row_in_block).cast(pa.string()),
        "-",
    )
    distinct = set(versions)
    if len(distinct) == 1:
        version = pa.repeat(pa.scalar(distinct.pop(), pa.string()), n)
    else:
        version = pa.array(versions, pa.string()).take(block_of_row)
    # features x rows in one pass (concatenating the transposed views into a C-ordered
    # array: without ``out`` numpy keeps the views' Fortran order and ravel() copies it
    # all again, ~10x slower), one Arrow array over all of it, then one zero-copy slice
    # per feature column
    by_feature = np.empty((n_features, n))
    np.concatenate([x.T for x in features], axis=1, out=by_feature)
    flat = pa.array(by_feature.ravel())
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
    arrays = [
        pa.array(np.repeat(np.array(ts, np.int64), counts), TS_TYPE),
        ids,
        pa.repeat(pa.scalar(replica, pa.string()), n),
        version,
        *(flat.slice(j * n, n) for j in range(n_features)),  # over features
        pa.array(np.concatenate(predictions)),
        score,
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=arrow_schema)
