"""The stattest registry: named drift tests and the column kinds they apply to, found by name."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from ingest.errors import ConfigError

Kind = Literal["numeric", "categorical"]
DriftWhen = Literal["p_value", "statistic"]

KINDS: tuple[Kind, ...] = get_args(Kind)
"""Column kinds in the order a window's features are reported: numeric, then categorical."""

_DRIFT_WHEN: tuple[str, ...] = get_args(DriftWhen)
_REGISTRY: dict[str, StatTest] = {}


@dataclass(frozen=True, eq=False)  # eq=False: fields are arrays, compare by identity
class StatTestResult:
    """Per-feature outcome of one test over all columns of one kind, in the reference's order."""

    statistic: np.ndarray
    """float64 [F]: the test statistic; NaN where the feature could not be tested."""
    p_value: np.ndarray
    """float64 [F]: the raw p-value; NaN where untestable, and for a test without p-values."""
    n_tested: np.ndarray
    """int64 [F]: non-missing window values the statistic was computed on."""


StatTestFunc = Callable[[Any, Any, Mapping[str, Any]], StatTestResult]
"""``func(reference, window, options)``: see :class:`StatTest` for the arguments."""


@dataclass(frozen=True)
class StatTest:
    """A drift test: a name, the column kinds it applies to, a vectorized function, a threshold.

    ``func(reference, window, options)`` tests every column of one kind of a window at once:

    - ``numeric``: ``reference`` is an :class:`analytics.ks.KSReference` (the sorted, NaN-free
      reference sample of each column) and ``window`` a float64 array ``[rows, F]`` with NaN
      for a missing value, columns in ``reference.names`` order.
    - ``categorical``: ``reference`` is an :class:`analytics.chisq.CategoricalReference`
      (category counts per column) and ``window`` maps each of ``reference.names`` to the
      window's values (``None`` = missing).

    ``options`` holds the detect configuration's fields by name (e.g. ``ks_method``); a test
    reads the ones it defines and ignores the others. The function returns a
    :class:`StatTestResult` with one entry per column of ``reference.names``.
    """

    name: str
    """Written to the history's ``test`` column and the ``test`` label of the statistic."""
    kinds: frozenset[Kind]
    """The column kinds the function accepts."""
    func: StatTestFunc
    default_threshold: float = 0.05
    """For a ``p_value`` test, the significance level the window's ``alpha`` defaults to (one
    ``alpha``, corrected over the window's features, applies to every p-value test); for a
    ``statistic`` test, the statistic at or above which a feature drifts."""
    drift_when: DriftWhen = "p_value"
    """``p_value``: a small p-value flags drift, after the window's multiple-testing
    correction. ``statistic``: a large statistic does (a distance, e.g. Wasserstein or PSI)."""
    effect_size: bool = False
    """The statistic is an effect size that the ``min_statistic`` gate applies to (KS's D)."""
    many: StatTestFunc | None = None
    """Optional, numeric tests only: ``many(reference, windows, options)`` tests ``W`` windows
    of one size at once, ``windows`` float64 ``[W, rows, F]``, returning arrays ``[W, F]``
    equal, window by window, to what ``func`` returns (a batch of windows then costs one
    vectorized call, not ``W``)."""

    def __call__(self, reference: Any, window: Any, options: Mapping[str, Any]) -> StatTestResult:
        """Run :attr:`func` and check it returned one value per reference column.

        Raises
        ------
        ValueError
            If the result's arrays do not have one entry per column of ``reference.names``.
        """
        result = self.func(reference, window, options)
        n = len(reference.names)
        for field in ("statistic", "p_value", "n_tested"):
            shape = np.shape(getattr(result, field))
            if shape != (n,):
                raise ValueError(
                    f"stattest {self.name!r} returned {field} of shape {shape}; expected ({n},), "
                    f"one value per column ({', '.join(reference.names)})"
                )
        return result

    def run_many(
        self, reference: Any, windows: np.ndarray, options: Mapping[str, Any]
    ) -> list[StatTestResult]:
        """Test each of ``windows`` (numeric, float64 ``[W, rows, F]``), with :attr:`many`
        if the test has it, else window by window; one result per window.

        Raises
        ------
        ValueError
            If :attr:`many` returns arrays that are not ``[W, F]``.
        """
        if self.many is None:
            return [self(reference, window, options) for window in windows]
        result = self.many(reference, windows, options)
        expected = (windows.shape[0], len(reference.names))
        for field in ("statistic", "p_value", "n_tested"):
            shape = np.shape(getattr(result, field))
            if shape != expected:
                raise ValueError(
                    f"stattest {self.name!r} returned {field} of shape {shape} for "
                    f"{expected[0]} windows; expected {expected}"
                )
        return [
            StatTestResult(result.statistic[w], result.p_value[w], result.n_tested[w])
            for w in range(expected[0])
        ]


def register(test: StatTest) -> StatTest:
    """Add ``test`` to the registry so configuration can name it; return it.

    A module defining a test calls this at import, as :mod:`analytics.stattests` does for
    ``ks`` and ``chi2``. Registering the same object again is a no-op.

    Parameters
    ----------
    test
        The test; its ``name`` must not belong to another registered test.

    Returns
    -------
    StatTest
        ``test`` itself, so a module can write ``KS = register(StatTest(...))``.

    Raises
    ------
    ValueError
        If the name is taken by another test, or a field is out of range (no kinds, an
        unknown kind or ``drift_when``, a threshold that is not a finite number).
    """
    if not test.name or not test.name.isidentifier():
        raise ValueError(f"stattest name must be an identifier (e.g. 'ks'); got {test.name!r}")
    unknown = set(test.kinds).difference(KINDS)
    if not test.kinds or unknown:
        raise ValueError(
            f"stattest {test.name!r} kinds must be a non-empty subset of {', '.join(KINDS)}; "
            f"got {sorted(test.kinds)}"
        )
    if test.drift_when not in _DRIFT_WHEN:
        raise ValueError(
            f"stattest {test.name!r} drift_when must be one of {', '.join(_DRIFT_WHEN)}; "
            f"got {test.drift_when!r}"
        )
    if not math.isfinite(test.default_threshold):
        raise ValueError(f"stattest {test.name!r} default_threshold must be a finite number")
    known = _REGISTRY.get(test.name)
    if known is not None and known is not test:
        raise ValueError(
            f"a different stattest is already registered as {test.name!r} "
            f"(from {known.func.__module__}); choose another name"
        )
    _REGISTRY[test.name] = test
    return test


def get(name: str, kind: Kind | None = None) -> StatTest:
    """Return the registered test called ``name``, checking it applies to ``kind`` if given.

    Raises
    ------
    ConfigError
        If no test has that name, or it does not apply to ``kind``; the message lists the
        tests that would do.

    Examples
    --------
    >>> get("ks").kinds
    frozenset({'numeric'})
    """
    test = _REGISTRY.get(name)
    if test is None:
        raise ConfigError(
            f"unknown stattest {name!r}; registered: {', '.join(sorted(_REGISTRY))} (a test "
            "of your own is registered by importing its module, before it is named)."
        )
    if kind is not None and kind not in test.kinds:
        fitting = ", ".join(t.name for t in registered(kind)) or "none"
        raise ConfigError(
            f"stattest {name!r} applies to {', '.join(sorted(test.kinds))} columns, not "
            f"{kind}; {kind} tests: {fitting}."
        )
    return test


def registered(kind: Kind | None = None) -> tuple[StatTest, ...]:
    """All registered tests, sorted by name.

    Parameters
    ----------
    kind
        Only the tests applying to this column kind; all tests when None.

    Returns
    -------
    tuple of StatTest
        The tests, e.g. ``ks`` and ``chi2`` and any a module registered.
    """
    return tuple(t for _, t in sorted(_REGISTRY.items()) if kind is None or kind in t.kinds)
