"""Shared fixtures; the helpers they use live in the development harness (``harness/``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from distributed import Client

from analytics import AnalyticsSettings, dask_client
from harness.s3 import MotoServer, moto_server


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """A client of a local Dask cluster of one worker process, shared by a module's tests."""
    settings = AnalyticsSettings(
        warehouse=str(tmp_path_factory.mktemp("cluster")), n_workers=1, dashboard_address=None
    )
    with dask_client(settings) as client:
        yield client


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's S3 server on loopback, one for the test session (tests use their own buckets)."""
    with moto_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def s3_url(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<a new bucket>/wh`` on :func:`moto`, with this process's AWS variables pointing
    at it for the test (``moto.env`` gives them to a child process)."""
    for name, value in moto.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return f"s3://{moto.create_bucket()}/wh"
