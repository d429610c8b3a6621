"""Drift analytics: reference profile, statistics, windows, the Dask driver, pushing results.

Reads the landing zone only through :mod:`ingest`; never imports :mod:`serving`.
"""

from analytics.checkpoint import Checkpoint, load_checkpoint
from analytics.cluster import dask_client
from analytics.detect import HISTORY_SCHEMA, DetectConfig, WindowResult, WindowSpec
from analytics.driver import CycleReport, Driver
from analytics.history import read_history
from analytics.profile import ReferenceProfile, build_profile
from analytics.settings import AnalyticsSettings

__all__ = [
    "HISTORY_SCHEMA",
    "AnalyticsSettings",
    "Checkpoint",
    "CycleReport",
    "DetectConfig",
    "Driver",
    "ReferenceProfile",
    "WindowResult",
    "WindowSpec",
    "build_profile",
    "dask_client",
    "load_checkpoint",
    "read_history",
]
