"""A window's columns of one kind: shaped as its stattest takes them, tested, and checked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from analytics.chisq import CategoricalReference
from analytics.profile import ReferenceProfile
from analytics.stattests import Kind, StatTest, StatTestResult

__all__ = [
    "ColumnQuality",
    "KindOutcome",
    "categorical_quality",
    "numeric_quality",
    "numeric_quality_many",
    "test_kind",
    "test_numeric_many",
]


@dataclass(frozen=True, eq=False)  # eq=False: fields hold arrays, compare by identity
class ColumnQuality:
    """Per column of one kind, in the reference's order; shares are of all the window's rows."""

    null_share: np.ndarray
    """float64 [F]: share of rows where the value is missing (null or NaN)."""
    out_of_range_share: np.ndarray
    """float64 [F]: share of rows outside the reference: below its minimum or above its
    maximum (numeric), or a category the reference never had (categorical)."""
    unseen: tuple[tuple[str, ...], ...]
    """Per column, the window's categories absent from the reference, sorted; empty for
    numeric columns."""


def numeric_quality(window: np.ndarray, low: np.ndarray, high: np.ndarray) -> ColumnQuality:
    """Missing and out-of-range shares of each numeric column of a window.

    Parameters
    ----------
    window
        float64 ``[rows, F]``, NaN = missing.
    low, high
        float64 [F]: each column's reference minimum and maximum (NaN for an empty one, so
        nothing counts as outside it).

    Returns
    -------
    ColumnQuality
        Shares per column; no unseen categories.
    """
    n = max(window.shape[0], 1)
    present = ~np.isnan(window)
    with np.errstate(invalid="ignore"):
        outside = present & ((window < low) | (window > high))
    return ColumnQuality(
        null_share=1.0 - present.sum(axis=0) / n,
        out_of_range_share=outside.sum(axis=0) / n,
        unseen=((),) * window.shape[1],
    )


def numeric_quality_many(
    windows: np.ndarray, low: np.ndarray, high: np.ndarray
) -> list[ColumnQuality]:
    """:func:`numeric_quality` of each of ``windows`` (float64 ``[W, rows, F]``) at once."""
    n = max(windows.shape[1], 1)
    present = ~np.isnan(windows)
    with np.errstate(invalid="ignore"):
        outside = present & ((windows < low) | (windows > high))
    null_share = 1.0 - present.sum(axis=1) / n
    out_of_range = outside.sum(axis=1) / n
    unseen = ((),) * windows.shape[2]
    return [ColumnQuality(null_share[w], out_of_range[w], unseen) for w in range(windows.shape[0])]


def categorical_quality(frame: pl.DataFrame, reference: CategoricalReference) -> ColumnQuality:
    """Null share, unseen categories and the share of rows holding one, per categorical column.

    Parameters
    ----------
    frame
        The window's rows, with a column for each of ``reference.names``.
    reference
        The reference categories of each column.

    Returns
    -------
    ColumnQuality
        Shares and unseen categories per column of ``reference.names``.
    """
    n = max(frame.height, 1)
    nulls, outside, unseen = [], [], []
    # a loop over columns: each has its own set of reference categories
    for name, known in zip(reference.names, reference.categories, strict=True):
        values = frame[name].cast(pl.String)
        new = values.is_not_null() & ~values.is_in(list(known))
        nulls.append(values.null_count() / n)
        outside.append(int(new.sum()) / n)
        unseen.append(tuple(sorted(values.filter(new).unique().to_list())))
    return ColumnQuality(
        null_share=np.array(nulls, dtype=np.float64),
        out_of_range_share=np.array(outside, dtype=np.float64),
        unseen=tuple(unseen),
    )


def numeric_matrix(frame: pl.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """``columns`` of ``frame`` as float64 ``[rows, columns]`` (null becomes NaN)."""
    window = frame.select(pl.col(c).cast(pl.Float64) for c in columns).to_numpy()
    return np.asarray(window, dtype=np.float64).reshape(frame.height, len(columns))


@dataclass(frozen=True, eq=False)
class KindOutcome:
    """The columns of one kind in a window: which they are, the test run, its result, quality."""

    columns: tuple[str, ...]
    """The profile's columns of this kind, in the order every array below follows."""
    test: StatTest
    result: StatTestResult
    quality: ColumnQuality


def test_kind(
    kind: Kind,
    frame: pl.DataFrame,
    profile: ReferenceProfile,
    test: StatTest,
    options: Mapping[str, Any],
    numeric: np.ndarray | None = None,
) -> KindOutcome:
    """Test all columns of ``kind`` in a window with ``test`` and measure their quality.

    Parameters
    ----------
    kind
        The column kind; ``profile`` must have columns of it.
    frame
        The window's rows, with every column of ``profile.columns(kind)``.
    profile
        The reference profile the window is compared against.
    test
        A registered test applying to ``kind``.
    options
        Passed to the test's function (the detect configuration's fields by name).
    numeric
        The window's numeric columns as float64 ``[rows, columns]`` if the caller has them
        already (a batch converts all its windows' rows at once).

    Returns
    -------
    KindOutcome
        The test's per-column result and the columns' data quality.
    """
    columns = profile.columns(kind)
    reference = profile.reference(kind)
    if kind == "numeric":
        window = numeric_matrix(frame, columns) if numeric is None else numeric
        quality = numeric_quality(window, profile.low, profile.high)
        return KindOutcome(columns, test, test(reference, window, options), quality)
    values = {c: frame[c].to_list() for c in columns}
    quality = categorical_quality(frame, reference)
    return KindOutcome(columns, test, test(reference, values, options), quality)


def test_numeric_many(
    windows: np.ndarray, profile: ReferenceProfile, test: StatTest, options: Mapping[str, Any]
) -> list[KindOutcome]:
    """:func:`test_kind` of the numeric columns of many windows of one size at once.

    Parameters
    ----------
    windows
        float64 ``[W, rows, F]``: each window's numeric columns, as :func:`test_kind` takes
        them.
    profile, test, options
        As for :func:`test_kind`.

    Returns
    -------
    list of KindOutcome
        One per window, each equal to what :func:`test_kind` returns for it.
    """
    columns = profile.columns("numeric")
    results = test.run_many(profile.reference("numeric"), windows, options)
    qualities = numeric_quality_many(windows, profile.low, profile.high)
    return [KindOutcome(columns, test, r, q) for r, q in zip(results, qualities, strict=True)]
