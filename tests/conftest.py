"""Shared fixtures; the helpers they use live in the development harness (``harness/``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from distributed import Client

from analytics import AnalyticsSettings, dask_client


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """A client of a local Dask cluster of one worker process, shared by a module's tests."""
    settings = AnalyticsSettings(
        warehouse=str(tmp_path_factory.mktemp("cluster")), n_workers=1, dashboard_address=None
    )
    with dask_client(settings) as client:
        yield client
