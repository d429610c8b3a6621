"""Every package's public surface (``__all__``) names real objects, and only those."""

from __future__ import annotations

import importlib
import types

import pytest

pytestmark = pytest.mark.unit

PACKAGES = ("driftlake", "ingest", "ingest.capture", "ingest.maintain", "serving", "analytics")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_is_an_object_of_the_package(package):
    module = importlib.import_module(package)
    exported = getattr(module, "__all__", [])
    assert sorted(exported) == sorted(set(exported)), "a name is exported twice"
    for name in exported:
        value = getattr(module, name)
        assert not isinstance(value, types.ModuleType), f"{package}.{name} is a module"


def test_both_capture_writers_are_landing_sinks(tmp_path):
    from ingest import Warehouse
    from ingest.capture import LandingSink, LandingWriter, ProcessLandingWriter
    from tests.unit.test_writer_blocks import SCHEMA

    wh = Warehouse(tmp_path / "wh")
    assert isinstance(LandingWriter(wh, SCHEMA, "r1"), LandingSink)
    assert isinstance(ProcessLandingWriter(wh, SCHEMA, "r1"), LandingSink)  # not started
    assert not isinstance(object(), LandingSink)
