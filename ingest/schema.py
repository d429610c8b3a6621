"""The landing schema: one explicit Arrow schema per model version, and their union for readers."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
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
# A categorical feature's landing type: its distinct values stored once per column chunk.
# Readers read it as a string (unify_schemas).
CATEGORICAL_TYPE = pa.dictionary(pa.int32(), pa.string())


@dataclass(frozen=True)
class FeatureSpec:
    """One monitored input column: its name and whether it is numeric or categorical.

    A numeric feature lands as float64, a categorical one as strings, dictionary-encoded
    (:data:`CATEGORICAL_TYPE`).
    """

    name: str
    kind: FeatureKind = "numeric"

    @property
    def arrow_type(self) -> pa.DataType:
        return pa.float64() if self.kind == "numeric" else CATEGORICAL_TYPE


@dataclass(frozen=True)
class ModelSchema:
    """The columns a model's landing files hold, in order.

    Parameters
    ----------
    model
        Model name (a path segment and a Prometheus label).
    features
        The model's input features, in the order the model expects them.
    version
        The model version this schema belongs to (recorded in every file's metadata). A new
        model version that adds a feature gets a new ModelSchema; readers unify the versions
        (see :func:`unify_schemas`).
    """

    model: str
    features: tuple[FeatureSpec, ...]
    version: str | None = None

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

    @property
    def categorical_features(self) -> tuple[str, ...]:
        """Names of the categorical features, in schema order."""
        return tuple(f.name for f in self.features if f.kind == "categorical")

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
        features = [{"name": f.name, "kind": f.kind} for f in self.features]
        metadata = {
            b"driftlake.model": self.model.encode(),
            b"driftlake.features": json.dumps(features).encode(),
        }
        if self.version is not None:
            metadata[b"driftlake.model_version"] = self.version.encode()
        return pa.schema(fields, metadata=metadata)

    def conform(self, batch: pa.RecordBatch | pa.Table) -> pa.RecordBatch | pa.Table:
        """Return ``batch`` cast to this schema, or raise SchemaError naming the column.

        String columns are dictionary-encoded where the schema has a categorical feature.
        """
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


def _common_type(name: str, types: list[pa.DataType]) -> pa.DataType:
    """The type all of ``types`` widen to without losing a value, or SchemaError."""
    # a dictionary-encoded column (a categorical feature) reads as its values
    known = [
        t.value_type if pa.types.is_dictionary(t) else t for t in types if not pa.types.is_null(t)
    ]
    if not known:
        return pa.null()
    if all(t.equals(known[0]) for t in known):
        return known[0]
    if all(pa.types.is_floating(t) or pa.types.is_integer(t) for t in known):
        return pa.float64() if any(pa.types.is_floating(t) for t in known) else pa.int64()

    def stringy(t: pa.DataType) -> bool:
        return (
            pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or pa.types.is_string_view(t)
            or (pa.types.is_dictionary(t) and stringy(t.value_type))
        )

    if all(stringy(t) for t in known):
        return pa.string()
    if all(pa.types.is_timestamp(t) for t in known):
        return TS_TYPE
    raise SchemaError(
        f"column {name!r} has incompatible types across landing files: "
        f"{sorted({str(t) for t in known})}; expected one numeric or one string type. "
        "Write the new model version's column under a new name"
    )


def unify_schemas(schemas: Iterable[pa.Schema]) -> pa.Schema:
    """Return the one schema that holds every column of ``schemas`` without losing a value.

    Columns missing from some files are kept (read as null there); numeric columns widen to
    float64 (a float32 column of one version and float64 of another read as float64), and
    string or dictionary columns to string. Order: driftlake's key columns, the features in
    the order first seen, then the model outputs.

    Raises
    ------
    SchemaError
        If one column is numeric in some files and a string in others.

    Example
    -------
    >>> v1 = pa.schema([("ts", TS_TYPE), ("a", pa.float64())])
    >>> v2 = pa.schema([("ts", TS_TYPE), ("a", pa.float32()), ("b", pa.float64())])
    >>> unify_schemas([v1, v2]).names
    ['ts', 'a', 'b']
    """
    types: dict[str, list[pa.DataType]] = {}
    for schema in schemas:
        for f in schema:
            types.setdefault(f.name, []).append(f.type)
    order = [n for n in META_COLUMNS if n in types]
    order += [n for n in types if n not in META_COLUMNS and n not in OUTPUT_COLUMNS]
    order += [n for n in OUTPUT_COLUMNS if n in types]
    return pa.schema([pa.field(n, _common_type(n, types[n])) for n in order])


def conform_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Return ``table`` with exactly ``schema``'s columns: missing ones null, types widened."""
    columns = []
    for f in schema:
        if f.name in table.column_names:
            column = table[f.name]
            columns.append(column if column.type.equals(f.type) else column.cast(f.type))
        else:
            columns.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=schema)
