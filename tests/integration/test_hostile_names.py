"""Every command refuses a name that would leave the warehouse or break a log line: a clear
message naming the setting, exit 2, and nothing written or deleted anywhere."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness import REFERENCE
from harness.procs import driftlake_env, free_port, run_python

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m <args>``; its whole process group dies after it, also if it started."""
    return run_python(["-m", *args], env=driftlake_env() | (env or {}), timeout=60)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def victim(tmp_path) -> tuple[Path, Path]:
    """A warehouse at ``tmp/a/wh``, and beside it what ``x/../../../victim`` points at: a
    history file and a checkpoint that must survive."""
    wh = tmp_path / "a" / "wh"
    wh.mkdir(parents=True)
    target = tmp_path / "a" / "victim"
    (target / "date=2026-01-01").mkdir(parents=True)
    (target / "date=2026-01-01" / "window-0000000000.parquet").write_bytes(b"history")
    (target / "checkpoint.json").write_bytes(b"{}")
    return tmp_path, wh


@pytest.mark.parametrize("how", ["flag", "env"])
def test_analytics_refuses_a_traversal_model_name(victim, how):
    root, wh = victim
    before = snapshot(root)
    name = "x/../../../victim"
    args = [
        "analytics",
        "run",
        "--once",
        "--warehouse",
        str(wh),
        "--reference-path",
        str(REFERENCE),
    ]
    env = {"DRIFTLAKE_N_WORKERS": "1", "DRIFTLAKE_DASHBOARD_ADDRESS": ""}
    if how == "flag":
        args += ["--model-name", name]
    else:
        env["DRIFTLAKE_MODEL_NAME"] = name
    proc = run(args, env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "model_name" in proc.stderr and "Traceback" not in proc.stderr
    assert snapshot(root) == before  # nothing written, nothing deleted, anywhere


def test_maintenance_refuses_a_traversal_model_name(victim):
    root, wh = victim
    before = snapshot(root)
    for cmd in ("compact", "retain"):
        proc = run(
            ["ingest", cmd, "--force", "--model", "x/../../../victim", "--warehouse", str(wh)]
        )
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "--model" in proc.stderr and "Traceback" not in proc.stderr
    assert snapshot(root) == before


def test_maintenance_of_every_model_skips_directories_that_are_not_models(tmp_path):
    wh = tmp_path / "wh"
    (wh / "landing" / "junk").mkdir(parents=True)
    (wh / "landing" / "model=a b").mkdir(parents=True)
    (wh / "landing" / "model=ok").mkdir(parents=True)
    proc = run(["ingest", "compact", "--force", "--warehouse", str(wh)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [
        "compact ok: 0 hours, 0 rows, 0 -> 0 files, 0 deleted",
        "retain ok: 0 landing hours and 0 history days deleted, 0 expired hours wait for "
        "compaction",
    ]
    assert "event=landing_dir_skipped" in proc.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [("DRIFTLAKE_REPLICA", "r1\n"), ("DRIFTLAKE_MODEL_NAME", "../x"), ("DRIFTLAKE_REPLICA", "a/b")],
)
def test_the_model_server_does_not_start_with_a_hostile_name(tmp_path, variable, value):
    wh = tmp_path / "wh"
    env = {variable: value, "DRIFTLAKE_WAREHOUSE": str(wh)}
    args = ["serving", "--port", str(free_port()), "--reference", str(REFERENCE)]
    proc = run(args, env)
    field = variable.removeprefix("DRIFTLAKE_").lower()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"invalid settings: {field}" in proc.stderr and "Traceback" not in proc.stderr
    assert not (wh / "landing").exists()
