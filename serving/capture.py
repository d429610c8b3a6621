"""Capture: each accepted request's arrays, handed to the landing writer as one block."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ingest import ModelSchema
from ingest.capture import LandingSink
from serving._mixed_request import MixedRows


class Capture:
    """Appends each accepted request to the replica's landing sink (never blocks).

    A request costs one O(1) :meth:`LandingSink.append_block`: its arrays go to the sink as
    they are, and the sink builds the Arrow table of many requests at once, off the request
    path, never a record batch per request.

    Parameters
    ----------
    writer
        The replica's landing sink; started and closed by the app's lifespan.
    schema
        The model's landing schema.
    feature_order
        The columns of the numeric array passed to :meth:`record`: the model's order for a
        schema of numeric features; for one with categorical features the schema's numeric
        features (rows arrive as :class:`~serving._mixed_request.MixedRows`).
    model_version
        Written into every row.

    Raises
    ------
    ValueError
        If ``feature_order`` lacks a numeric feature of the landing schema.
    """

    def __init__(
        self,
        writer: LandingSink,
        schema: ModelSchema,
        feature_order: Sequence[str],
        model_version: str,
    ) -> None:
        position = {name: i for i, name in enumerate(feature_order)}
        missing = [n for n in schema.numeric_features if n not in position]
        if missing:
            raise ValueError(f"feature order lacks landing columns {missing}")
        take = [position[name] for name in schema.numeric_features]
        self.writer = writer
        # None when the model's column order is the landing order (the default model)
        self.take = None if take == list(range(len(take))) else take
        self.model_version = model_version
        if schema.categorical_features:
            self.record = self._record_mixed  # type: ignore[method-assign]

    def record(
        self,
        ts_us: int,
        id_prefix: str,
        x: np.ndarray,
        prediction: np.ndarray,
        score: np.ndarray | None,
    ) -> bool:
        """Queue one request's rows; False if the writer's buffer was full and it dropped them.

        Row ``i`` lands with request id ``f"{id_prefix}-{i}"``. ``x`` (rows x features in
        ``feature_order``; :class:`MixedRows` for a schema with categorical features) is kept
        by reference until published and must not be modified afterwards.
        """
        take = self.take
        features = x if take is None else x[:, take]
        return self.writer.append_block(
            ts_us, id_prefix, features, prediction, score, self.model_version
        )

    def _record_mixed(
        self,
        ts_us: int,
        id_prefix: str,
        x: MixedRows,
        prediction: np.ndarray,
        score: np.ndarray | None,
    ) -> bool:
        take = self.take
        features = x.numeric if take is None else x.numeric[:, take]
        return self.writer.append_block(
            ts_us,
            id_prefix,
            features,
            prediction,
            score,
            self.model_version,
            categorical=x.categorical,
        )
