"""Reference data: the training features a model's live traffic is compared against."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from ingest.errors import SchemaError
from ingest.schema import FeatureSpec, ModelSchema


@dataclass(frozen=True)
class Reference:
    """A reference data set: its frame, the model schema it implies, and the label column."""

    frame: pl.DataFrame
    schema: ModelSchema
    label: str | None

    @property
    def features(self) -> pl.DataFrame:
        return self.frame.select(self.schema.feature_names)


def load_reference(
    path: str | os.PathLike[str],
    model: str,
    *,
    label: str | None = "target",
    categorical: Sequence[str] = (),
) -> Reference:
    """Load a reference Parquet file and infer each feature's kind from its dtype.

    Parameters
    ----------
    path
        Parquet file with one column per feature (and optionally the label).
    model
        The model name the schema is built for.
    label
        Column holding the training label; not a feature. None if the file has none.
    categorical
        Columns to treat as categorical even if numeric (string columns always are).

    Raises
    ------
    SchemaError
        If the file cannot be read, or a named label/categorical column is missing.
    """
    try:
        frame = pl.read_parquet(path)
    except (OSError, pl.exceptions.ComputeError) as exc:
        raise SchemaError(f"cannot read reference file {path}: {exc}") from exc
    if label is not None and label not in frame.columns:
        label = None
    missing = [c for c in categorical if c not in frame.columns]
    if missing:
        raise SchemaError(f"categorical columns {missing} are not in reference file {path}")
    specs = []
    for name, dtype in frame.schema.items():
        if name == label:
            continue
        is_cat = name in categorical or not dtype.is_numeric()
        specs.append(FeatureSpec(name, "categorical" if is_cat else "numeric"))
    casts = [pl.col(s.name).cast(pl.Float64 if s.kind == "numeric" else pl.String) for s in specs]
    frame = frame.with_columns(casts)
    return Reference(frame, ModelSchema(model, tuple(specs)), label)
