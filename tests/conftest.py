"""Shared fixtures: loopback ports, temporary warehouses, and the integration-binary gate."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "reference.parquet"
REQUIRE_INTEGRATION = os.environ.get("DRIFTLAKE_REQUIRE_INTEGRATION") == "1"


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_binary(name: str) -> str:
    """Return the path of ``name``; skip (or fail under DRIFTLAKE_REQUIRE_INTEGRATION=1)."""
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if path:
        return path
    reason = (
        f"{name} is not installed: install Debian's package "
        "(apt-get install nginx prometheus prometheus-pushgateway prometheus-alertmanager "
        "docker-compose chromium; .ci/run does)"
    )
    if REQUIRE_INTEGRATION:
        pytest.fail(reason + " -- DRIFTLAKE_REQUIRE_INTEGRATION=1 makes this a failure")
    pytest.skip(reason)


@pytest.fixture
def port() -> Callable[[], int]:
    return free_port
