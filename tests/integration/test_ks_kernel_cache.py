"""The compiled KS kernel is compiled once and then loaded from numba's disk cache, and still
works, compiled in memory, where no cache directory is writable.

Each case runs a fresh Python (a child process), as a Dask worker starts. Oracle for the
statistic: ``scipy.stats.ks_2samp``, bitwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CHILD = textwrap.dedent(
    """
    import numpy as np
    from scipy import stats
    from _ks_kernel import ks_statistics
    ref = np.array([0.5, 1.0, 1.0, 2.0])
    win = np.array([[[1.0, 1.5, 3.0, np.nan]]])
    statistic, n = ks_statistics(win, ref, np.array([0]), np.array([4]))
    want = stats.ks_2samp(ref, win[0, 0, :3], method="asymp").statistic
    assert statistic[0, 0].tobytes() == np.float64(want).tobytes(), (statistic, want)
    print("cache:", type(ks_statistics._cache).__name__)
    print("OK")
    """
)


def run_child(module_dir: Path, env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(module_dir), **env},
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("OK"), out.stdout
    return out.stdout


def kernel_copy(tmp_path: Path) -> Path:
    """The kernel module alone in a directory of the test's own (it imports no project code)."""
    module_dir = tmp_path / "module"
    module_dir.mkdir()
    shutil.copy(ROOT / "analytics" / "_ks_kernel.py", module_dir / "_ks_kernel.py")
    return module_dir


def test_second_process_loads_the_kernel_from_the_disk_cache(tmp_path):
    module_dir = kernel_copy(tmp_path)
    cache = tmp_path / "cache"
    env = {"NUMBA_CACHE_DIR": str(cache), "NUMBA_DEBUG_CACHE": "1"}
    first = run_child(module_dir, env)
    assert "data saved" in first and "cache: FunctionCache" in first
    assert list(cache.rglob("*.nbi")), "no cache index written"
    second = run_child(module_dir, env)
    assert "data loaded" in second and "data saved" not in second


def test_kernel_compiles_in_memory_when_no_cache_directory_is_writable(tmp_path):
    # Every place numba looks for a cache directory lies under a regular file: the module's
    # __pycache__, NUMBA_CACHE_DIR and the user's cache directory (root may write anywhere
    # else, so permissions would not do).
    module_dir = kernel_copy(tmp_path)
    (module_dir / "__pycache__").write_text("not a directory")
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    env = {
        "NUMBA_CACHE_DIR": str(blocker / "numba"),
        "HOME": str(blocker / "home"),
        "XDG_CACHE_HOME": str(blocker / "cache"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    assert "cache: NullCache" in run_child(module_dir, env)
