"""The development harness stays development-only: nothing outside tests/ imports tests, and
nothing shipped (the wheel's packages, the image's files) imports the harness or the benches."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

from harness import ROOT

pytestmark = pytest.mark.unit

SHIPPED_SCRIPTS = ("run.py",)  # copied into the image beside the packages
DEVELOPMENT = {"harness", "bench", "tests"}


def imported_roots(path: Path) -> set[str]:
    """The top-level names a Python file imports (absolute imports only)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def python_files(*exclude: str) -> list[Path]:
    """Every Python file of the repository, but for the top-level folders in ``exclude``."""
    skip = {"warehouse", *exclude}
    top = [p for p in ROOT.iterdir() if not p.name.startswith(".") and p.name not in skip]
    return [f for p in top for f in ([p] if p.is_file() else p.rglob("*")) if f.suffix == ".py"]


def test_no_module_outside_tests_imports_tests():
    offenders = [
        str(p.relative_to(ROOT)) for p in python_files("tests") if "tests" in imported_roots(p)
    ]
    assert offenders == [], f"import the development harness (harness/) instead: {offenders}"


def test_nothing_shipped_imports_the_harness_the_benches_or_the_tests():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert not DEVELOPMENT & set(packages), packages
    copied = re.findall(r"^COPY (\S+) ", (ROOT / "Dockerfile").read_text(), re.M)
    assert not DEVELOPMENT & set(copied), copied
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert ignored >= DEVELOPMENT, "keep the development folders out of the build context"
    shipped = [p for pkg in packages for p in (ROOT / pkg).rglob("*.py")]
    shipped += [ROOT / name for name in SHIPPED_SCRIPTS]
    offenders = {str(p.relative_to(ROOT)): sorted(DEVELOPMENT & imported_roots(p)) for p in shipped}
    assert {k: v for k, v in offenders.items() if v} == {}
