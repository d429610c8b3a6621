"""Without scipy's private exact KS routine, ks_test warns once and still equals ks_2samp.

A scipy that renamed ``_attempt_exact_2kssamp`` is stood in for by a fresh Python (a child
process) whose ``scipy.stats._stats_py`` lacks the name. Oracle: ``scipy.stats.ks_2samp``
with ``method="exact"``; statistic identical, p-value within 1e-12.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from harness import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_without_scipys_private_name_ks_test_warns_and_still_equals_ks_2samp() -> None:
    script = textwrap.dedent(
        """
        import logging, sys, types
        import numpy as np
        import scipy.stats._stats_py as private
        from scipy import stats
        # as a scipy that renamed it: scipy's own code still has it, the name is gone
        renamed = types.ModuleType(private.__name__)
        renamed.__dict__.update(
            {k: v for k, v in vars(private).items() if k != "_attempt_exact_2kssamp"}
        )
        sys.modules[private.__name__] = renamed
        logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
        from analytics.ks import KSReference, ks_test
        rng = np.random.default_rng(7)
        ref = rng.normal(size=(300, 3))
        win = rng.normal(0.3, 1.0, size=(120, 3))
        res = ks_test(KSReference.from_columns({str(i): ref[:, i] for i in range(3)}), win)
        for f in range(3):
            want = stats.ks_2samp(ref[:, f], win[:, f], method="exact")
            assert res.method[f] == "exact", res.method
            assert res.statistic[f] == want.statistic, (res.statistic[f], want.statistic)
            assert abs(res.pvalue[f] - want.pvalue) <= 1e-12, (res.pvalue[f], want.pvalue)
        print("OK")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "event=scipy_private_missing" in out.stdout
    assert out.stdout.strip().endswith("OK")
