"""The landing schema: one explicit Arrow schema per model, built from its feature specs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from ingest.errors import SchemaError

FeatureKind = Literal["numeric", "categorical"]

TS = "ts"
REQUEST_ID = "request_id"
REPLICA = "replica"
MODEL_VERSION = "model_version"
PREDICTION = "prediction"
SCORE = "score"
META_COLUMNS = (TS, REQUEST_ID, REPLICA, MODEL_VERSION)
OUTPUT_COLUMNS = (PREDICTION, SCORE)
TS_TYPE = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class FeatureSpec:
    """One monitored input column: its name and whether it is numeric or categorical."""

    name: str
    kind: FeatureKind = "numeric"

    @property
    def arrow_type(self) -> pa.DataType:
        return pa.float64() if self.kind == "numeric" else pa.string()


@dataclass(frozen=True)
class ModelSchema:
    """The columns a model's landing files hold, in order.

    Parameters
    ----------
    model
        Model name (a path segment and a Prometheus label).
    features
        The model's input features, in the order the model expects them.
    """

    model: str
    features: tuple[FeatureSpec, ...]

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        if not names:
            raise SchemaError(f"model {self.model!r} has no features: expected at least one")
        clash = sorted(set(names) & set(META_COLUMNS + OUTPUT_COLUMNS))
        if clash:
            raise SchemaError(
                f"feature names {clash} clash with driftlake's own columns; rename them"
            )
        if len(set(names)) != len(names):
            raise SchemaError(f"model {self.model!r} has duplicate feature names")

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def numeric_features(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.kind == "numeric")

    def arrow_schema(self) -> pa.Schema:
        """Return the Arrow schema every landing file of this model is written with."""
        fields = [
            pa.field(TS, TS_TYPE, nullable=False),
            pa.field(REQUEST_ID, pa.string(), nullable=False),
            pa.field(REPLICA, pa.string(), nullable=False),
            pa.field(MODEL_VERSION, pa.string(), nullable=False),
        ]
        fields += [pa.field(f.name, f.arrow_type) for f in self.features]
        fields += [pa.field(PREDICTION, pa.float64()), pa.field(SCORE, pa.float64())]
        return pa.schema(fields, metadata={b"driftlake.model": self.model.encode()})

    def conform(self, batch: pa.RecordBatch | pa.Table) -> pa.RecordBatch | pa.Table:
        """Return ``batch`` cast to this schema, or raise SchemaError naming the column."""
        target = self.arrow_schema()
        missing = [n for n in target.names if n not in batch.schema.names]
        extra = [n for n in batch.schema.names if n not in target.names]
        if missing or extra:
            raise SchemaError(
                f"batch for model {self.model!r} does not match its landing schema: "
                f"missing columns {missing}, unexpected columns {extra}"
            )
        if batch.schema.equals(target):
            return batch
        try:
            return batch.select(target.names).cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SchemaError(f"batch for model {self.model!r} cannot be cast: {exc}") from exc


def schema_from_columns(
    model: str, columns: Sequence[str], categorical: Sequence[str] = ()
) -> ModelSchema:
    """Build a ModelSchema from column names, numeric unless named in ``categorical``."""
    cats = set(categorical)
    return ModelSchema(
        model,
        tuple(FeatureSpec(c, "categorical" if c in cats else "numeric") for c in columns),
    )
