"""The ingest package's names are what they say they are, and the publisher process does
not pay for the readers' imports."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types

import pytest

import ingest

pytestmark = pytest.mark.unit


def test_every_exported_name_is_the_object_not_a_module():
    for name in ingest.__all__:
        if importlib.util.find_spec(f"ingest.{name}") is not None:
            importlib.import_module(f"ingest.{name}")  # a module of that name, imported first
        assert not isinstance(getattr(ingest, name), types.ModuleType), name
    assert sorted(ingest.__all__) == sorted(set(ingest.__all__))
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        ingest.nonexistent  # noqa: B018


def test_the_publisher_imports_neither_polars_nor_the_readers():
    code = (
        "import sys, ingest.publisher; print(sorted(m for m in sys.modules if 'polars' in m "
        "or m in ('ingest.reader', 'ingest.compaction', 'ingest.reference')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
