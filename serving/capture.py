"""Capture: each accepted request's arrays, handed to the landing writer as one block."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ingest import ModelSchema
from ingest.capture import LandingSink
from ingest.schema import TS_TYPE


class CaptureBatchBuilder:
    """Builds the landing record batch of one request from its validated arrays.

    Constant columns (replica, model version, a null score) are built once at the largest
    batch size and sliced per request, which is O(1) and copies nothing.

    Parameters
    ----------
    schema
        The model's landing schema.
    feature_order
        The columns of the arrays passed to :meth:`build` (the model's order).
    replica, model_version
        Written into every row.
    max_rows
        The largest batch a request can carry.
    """

    def __init__(
        self,
        schema: ModelSchema,
        feature_order: tuple[str, ...],
        *,
        replica: str,
        model_version: str,
        max_rows: int,
    ) -> None:
        self.arrow_schema = schema.arrow_schema()
        position = {name: i for i, name in enumerate(feature_order)}
        missing = [n for n in schema.feature_names if n not in position]
        if missing:
            raise ValueError(f"feature order lacks landing columns {missing}")
        self._take = [position[name] for name in schema.feature_names]
        # None when the model's column order is the landing order (the default model)
        self.take = None if self._take == list(range(len(self._take))) else self._take
        self.model_version = model_version
        self._max_rows = max_rows
        self._replica = pa.array([replica] * max_rows, pa.string())
        self._version = pa.array([model_version] * max_rows, pa.string())
        self._no_score = pa.nulls(max_rows, pa.float64())

    def build(
        self,
        ts_us: int,
        request_ids: list[str],
        x: np.ndarray,
        prediction: np.ndarray,
        score: np.ndarray | None,
    ) -> pa.RecordBatch:
        """Return the batch of one request.

        Parameters
        ----------
        ts_us
            The request's timestamp, microseconds since the epoch (UTC); shared by its rows.
        request_ids
            One id per row.
        x
            Rows x features (float64, in ``feature_order``); must not be modified afterwards,
            since the batch shares its memory.
        prediction, score
            float64 per row; ``score`` None when the model has no probability.
        """
        n = x.shape[0]
        if n > self._max_rows:
            raise ValueError(f"batch of {n} rows exceeds max_rows={self._max_rows}")
        # one Arrow array over all feature values, column after column, then O(1) slices
        flat = pa.array(np.ascontiguousarray(x.T).ravel())
        arrays = [
            pa.repeat(pa.scalar(ts_us, TS_TYPE), n),
            pa.array(request_ids, pa.string()),
            self._replica.slice(0, n),
            self._version.slice(0, n),
        ]
        # a loop over features (not rows): Arrow needs one array per column
        arrays += [flat.slice(j * n, n) for j in self._take]
        arrays.append(pa.array(prediction, pa.float64()))
        arrays.append(self._no_score.slice(0, n) if score is None else pa.array(score))
        return pa.RecordBatch.from_arrays(arrays, schema=self.arrow_schema)


class Capture:
    """Appends each accepted request to the replica's landing writer (never blocks).

    A request costs one O(1) :meth:`LandingSink.append_block`: its arrays go into the
    buffer as they are and the flusher thread builds the Arrow table of all buffered
    requests at once (building a record batch per request cost ~50 us, a fifth of a
    default-model request).

    Parameters
    ----------
    writer
        The replica's landing writer; started and closed by the app's lifespan.
    builder
        Knows the landing column order and the model version (and builds a request's
        record batch for callers that want one).
    """

    def __init__(self, writer: LandingSink, builder: CaptureBatchBuilder) -> None:
        self.writer = writer
        self.builder = builder

    def record(
        self,
        ts_us: int,
        id_prefix: str,
        x: np.ndarray,
        prediction: np.ndarray,
        score: np.ndarray | None,
    ) -> bool:
        """Queue one request's rows; False if the writer's buffer was full and it dropped them.

        Row ``i`` lands with request id ``f"{id_prefix}-{i}"``. ``x`` (rows x features in the
        builder's ``feature_order``) is kept by reference until published and must not be
        modified afterwards.
        """
        take = self.builder.take
        features = x if take is None else x[:, take]
        return self.writer.append_block(
            ts_us, id_prefix, features, prediction, score, self.builder.model_version
        )
