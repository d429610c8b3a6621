"""Drift tests as registered objects: detect code asks this registry, never names a test.

A test is a :class:`StatTest`: its name (what history records), the column kinds it applies
to, one function vectorized over all columns of that kind in a window, and its default
threshold. ``ks`` (numeric) and ``chi2`` (categorical) are registered on import. Adding a
test is one module that builds a :class:`StatTest` and calls :func:`register`; import it here
to ship it, or from the application before building a ``DetectConfig`` that names it.

Examples
--------
>>> [(t.name, sorted(t.kinds)) for t in registered()]
[('chi2', ['categorical']), ('ks', ['numeric'])]
"""

from analytics.stattests import _chisq, _ks  # noqa: F401  (each registers its test)
from analytics.stattests._registry import (
    KINDS,
    DriftWhen,
    Kind,
    StatTest,
    StatTestFunc,
    StatTestResult,
    get,
    register,
    registered,
)

__all__ = [
    "KINDS",
    "DriftWhen",
    "Kind",
    "StatTest",
    "StatTestFunc",
    "StatTestResult",
    "get",
    "register",
    "registered",
]
