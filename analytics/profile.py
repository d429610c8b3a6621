"""The reference profile: everything a window is compared against, built once per job."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics.chisq import CategoricalReference
from analytics.ks import KSReference
from analytics.settings import AnalyticsSettings
from analytics.stattests import Kind
from ingest import PREDICTION
from ingest.reference import Reference, load_reference


@dataclass(frozen=True)
class ReferenceProfile:
    """Sorted numeric reference samples, categorical counts and value ranges of one model.

    ``numeric`` covers the numeric features and, when monitored, the model's prediction
    column (compared with the reference label: a model that keeps predicting the training
    label mix shows no prediction drift).

    What is prepared is the reference distribution of a column kind, not of one test: the
    sorted sample is the whole empirical distribution and the counts the whole categorical
    one, so every registered test of a kind (see :mod:`analytics.stattests`) runs on the
    same profile, and choosing another test needs no new profile.
    """

    model: str
    numeric: KSReference
    categorical: CategoricalReference | None
    low: np.ndarray
    high: np.ndarray

    @property
    def numeric_columns(self) -> tuple[str, ...]:
        return self.numeric.names

    @property
    def categorical_columns(self) -> tuple[str, ...]:
        return self.categorical.names if self.categorical is not None else ()

    def columns(self, kind: Kind) -> tuple[str, ...]:
        """The profiled columns of ``kind``, in the order windows report them."""
        return self.numeric_columns if kind == "numeric" else self.categorical_columns

    def reference(self, kind: Kind) -> KSReference | CategoricalReference | None:
        """The reference a stattest of ``kind`` receives (None: no such columns)."""
        return self.numeric if kind == "numeric" else self.categorical


def build_profile(reference: Reference, *, monitor_prediction: bool = True) -> ReferenceProfile:
    """Sort the reference once per numeric column and count its categories.

    Parameters
    ----------
    reference
        The loaded reference data (see :func:`ingest.load_reference`).
    monitor_prediction
        Also profile the label column as the reference of the ``prediction`` column.
    """
    schema = reference.schema
    columns = {
        name: reference.frame[name].cast(float).to_numpy() for name in schema.numeric_features
    }
    if monitor_prediction and reference.label is not None:
        columns[PREDICTION] = reference.frame[reference.label].cast(float).to_numpy()
    numeric = KSReference.from_columns(columns)
    low = np.array([v[0] if v.size else np.nan for v in numeric.sorted_values])
    high = np.array([v[-1] if v.size else np.nan for v in numeric.sorted_values])
    cats = [f.name for f in schema.features if f.kind == "categorical"]
    categorical = (
        CategoricalReference.from_columns({c: reference.frame[c].to_list() for c in cats})
        if cats
        else None
    )
    return ReferenceProfile(schema.model, numeric, categorical, low, high)


def load_profile(settings: AnalyticsSettings) -> ReferenceProfile:
    """Load ``settings.reference_path`` and build the profile of ``settings.model_name``."""
    reference = load_reference(
        settings.reference_path,
        settings.model_name,
        label=settings.label,
        categorical=settings.categorical,
    )
    return build_profile(reference, monitor_prediction=settings.monitor_prediction)
