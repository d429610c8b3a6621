"""Every command a user runs answers ``-h`` with its usage and exit status 0, never a trace."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic_settings import BaseSettings

from analytics.settings import AnalyticsSettings
from harness import ROOT
from harness.settings import field_names
from ingest.maintain.settings import MaintenanceSettings
from serving.settings import ServingSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# each command, and a flag its help must list (so an empty or truncated help fails too)
COMMANDS = {
    "serving": (["-m", "serving"], "--landing-compression"),
    "analytics run": (["-m", "analytics", "run"], "--pushgateway"),
    "analytics backfill": (["-m", "analytics", "backfill"], "--start"),
    "ingest compact": (["-m", "ingest", "compact"], "--grace"),
    "ingest retain": (["-m", "ingest", "retain"], "--delete-after"),
    "run.py": (["run.py"], "--drift"),
    "bench.serving": (["-m", "bench.serving"], "--rounds"),
    "bench.variants": (["-m", "bench.variants"], "--variant"),
    "bench.freshness": (["-m", "bench.freshness"], "--runs"),
}
# the service commands list a flag for every field of their settings class
SETTINGS = {
    "serving": ServingSettings,
    "analytics run": AnalyticsSettings,
    "analytics backfill": AnalyticsSettings,
    "ingest compact": MaintenanceSettings,
    "ingest retain": MaintenanceSettings,
}


def test_every_command_prints_its_help():
    # all at once: each process spends its time importing
    procs = {
        name: subprocess.Popen(
            [sys.executable, *args, "-h"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (args, _) in COMMANDS.items()
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (name, err)
        assert "Traceback" not in err, (name, err)
        assert out.startswith("usage: "), (name, out)
        assert COMMANDS[name][1] in out, (name, out)
        flags = {"--" + f.replace("_", "-") for f in field_names(SETTINGS.get(name, BaseSettings))}
        assert not [f for f in flags if f + " " not in out and f + "," not in out], (name, out)
