"""docker-compose.yml and the Grafana provisioning hold the stack's promises without an engine:
nothing private is published, scalable services stay scalable, Grafana has no default password,
and every dashboard panel asks Prometheus something.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ingest import publisher
from tests.conftest import ROOT, require_binary

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

COMPOSE = ROOT / "docker-compose.yml"
GRAFANA = ROOT / "grafana"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
SCALABLE = ("model-server", "dask-worker")


def compose_config(tmp_path: Path, password: str | None) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` with an empty env file, so no local .env can hide a default."""
    binary = require_binary("docker-compose")
    env = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    if password is not None:
        env["GRAFANA_ADMIN_PASSWORD"] = password
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    return subprocess.run(
        [binary, "-f", str(COMPOSE), "--env-file", str(env_file), "config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> dict[str, Any]:
    """The compose model as docker-compose resolves it (anchors, merges, interpolation)."""
    result = compose_config(tmp_path_factory.mktemp("compose"), "test-password")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """``(host_ip, published, target)`` for each published port, short or long syntax."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            if port.get("published") is not None:
                out.append((port.get("host_ip", ""), int(port["published"]), int(port["target"])))
            continue
        parts = str(port).split("/")[0].rsplit(":", 2)
        if len(parts) == 1:  # "8000": a random host port on every interface
            out.append(("", 0, int(parts[0])))
        elif len(parts) == 2:
            out.append(("", int(parts[0]), int(parts[1])))
        else:
            out.append((parts[0].strip("[]"), int(parts[1]), int(parts[2])))
    return out


def test_config_needs_the_grafana_password_and_has_no_default(tmp_path):
    without = compose_config(tmp_path, None)
    assert without.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in without.stderr
    with_it = compose_config(tmp_path, "s3cret-for-test")
    assert with_it.returncode == 0, with_it.stderr
    grafana = yaml.safe_load(with_it.stdout)["services"]["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "s3cret-for-test"


def test_private_ports_are_never_published_beyond_loopback(config):
    bindings = {name: published(svc) for name, svc in config["services"].items()}
    for name, ports in bindings.items():
        for host_ip, _, target in ports:
            if target in (8786, 9091):
                assert host_ip in LOOPBACK, f"{name} publishes {target} on {host_ip or 'all'}"
    assert not [p for p in bindings["dask-scheduler"] if p[2] == 8786]
    assert bindings["dask-scheduler"] == [("127.0.0.1", 8787, 8787)]
    assert bindings["prometheus"] == [("127.0.0.1", 9090, 9090)]
    assert bindings["gateway"] == [("", 8002, 8002)]
    assert bindings["grafana"] == [("", 4000, 3000)]


def test_scalable_services_have_no_fixed_name_or_host_port(config):
    for name in SCALABLE:
        svc = config["services"][name]
        assert "container_name" not in svc, name
        assert not published(svc), f"{name} publishes a port: --scale would collide"
    assert config["services"]["dask-worker"]["environment"]["POLARS_MAX_THREADS"] == "1"
    assert "--nthreads" in config["services"]["dask-worker"]["command"]


def test_model_servers_may_raise_their_publisher_from_idle(config):
    # without it the publisher stays at nice 5 (safe, but requests may wait behind a flush)
    nice = config["services"]["model-server"]["ulimits"]["nice"]
    soft = nice["soft"] if isinstance(nice, dict) else nice
    assert int(soft) >= 20 - publisher.NICE


def test_services_have_healthchecks_restart_policies_and_the_shared_warehouse(config):
    services = config["services"]
    for name in ("model-server", "gateway", "prometheus", "pushgateway", "dask-scheduler"):
        test = services[name].get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
    assert "/healthz" in " ".join(services["model-server"]["healthcheck"]["test"])
    for name, svc in services.items():
        assert svc.get("restart") in ("unless-stopped", "always", "on-failure"), name
    for name in ("model-server", "analytics", "dask-worker"):
        mounts = [str(v) for v in services[name]["volumes"]]
        assert any(m.startswith("warehouse:/warehouse") for m in mounts), (name, mounts)
    assert "warehouse" in config["volumes"]


def test_services_run_the_commands_of_the_design(config):
    s = config["services"]
    assert s["model-server"]["command"][:3] == ["python", "-m", "serving"]
    analytics = s["analytics"]["command"]
    assert analytics[:4] == ["python", "-m", "analytics", "run"]
    assert "tcp://dask-scheduler:8786" in analytics
    assert "http://pushgateway:9091" in analytics
    assert s["dask-scheduler"]["command"][:2] == ["dask", "scheduler"]
    assert s["dask-worker"]["command"][:3] == ["dask", "worker", "tcp://dask-scheduler:8786"]
    images = {s[n].get("image") for n in ("model-server", "analytics", "dask-scheduler")}
    assert len(images | {s["dask-worker"].get("image")}) == 1, "one image for client and workers"
    env = s["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_bind_mounts_point_at_files_of_this_repo(config):
    mounts = {
        name: [v for v in svc.get("volumes", []) if str(v).startswith("/")]
        for name, svc in config["services"].items()
    }
    targets = {}
    for name, vols in mounts.items():
        for vol in vols:
            source, target = str(vol).split(":")[:2]
            assert Path(source).exists(), f"{name} mounts missing {source}"
            assert Path(source).resolve().is_relative_to(ROOT), source
            targets[target] = Path(source)
    assert targets["/etc/nginx/nginx.conf"] == ROOT / "nginx.conf"
    assert targets["/etc/prometheus"] == ROOT / "prometheus"
    assert targets["/etc/grafana/provisioning"] == GRAFANA / "provisioning"
    # the dashboard provider reads the directory compose mounts the dashboards into
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/driftlake.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    assert targets[path] == GRAFANA / "dashboards"


def test_dockerfile_builds_a_locked_non_root_image():
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("FROM python:3.11-slim") == 1
    assert "uv sync --frozen --no-dev" in text
    assert "pip install --no-cache-dir uv" in text
    user = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert user and user[-1] not in ("root", "0")
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "warehouse"} <= set(ignored)


def test_datasource_provisioning_matches_the_dashboards():
    files = sorted((GRAFANA / "provisioning" / "datasources").glob("*.yml"))
    assert files
    sources = [ds for f in files for ds in yaml.safe_load(f.read_text())["datasources"]]
    prom = [ds for ds in sources if ds["type"] == "prometheus"]
    assert [ds["uid"] for ds in prom] == ["prometheus"]
    assert prom[0]["url"] == "http://prometheus:9090"


def _variable_query(var: dict[str, Any]) -> str:
    query = var.get("query")
    return query.get("query", "") if isinstance(query, dict) else str(query)


@pytest.mark.parametrize("path", sorted((GRAFANA / "dashboards").glob("*.json")), ids=str)
def test_dashboard_is_complete_and_every_panel_queries_prometheus(path):
    dash = json.loads(path.read_text())
    assert dash["uid"] and dash["title"]
    assert dash["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert _variable_query(variables["model"]) == "label_values(driftlake_dataset_drift, model)"
    assert _variable_query(variables["feature"]) == (
        'label_values(driftlake_feature_p_value{model="$model"}, feature)'
    )
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len(panels) >= 20
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["datasource"]["uid"] == "prometheus", panel["title"]
        assert panel.get("targets"), f"panel {panel['title']!r} has no targets"
        for t in panel["targets"]:
            assert t.get("expr", "").strip(), f"panel {panel['title']!r} has an empty query"
            assert t.get("refId"), panel["title"]
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for metric in (
        "driftlake_features_drifting",
        "driftlake_dataset_drift",
        "driftlake_feature_p_value",
        "driftlake_feature_drift",
        "driftlake_last_drift_timestamp_seconds",
        "driftlake_windows_total",
        "driftlake_drifted_windows_total",
        "driftlake_window_rows",
        "driftlake_window_replicas",
        "driftlake_cycle_duration_seconds",
        "driftlake_landing_lag_seconds",
        "push_time_seconds",
        "driftlake_http_requests_total",
        "driftlake_http_request_duration_seconds_bucket",
        "driftlake_capture_buffer_rows",
        "driftlake_capture_oldest_row_age_seconds",
        "driftlake_capture_dropped_rows_total",
    ):
        assert metric in exprs, f"no panel shows {metric}"


def test_committed_dashboard_is_what_build_dashboard_py_builds():
    result = subprocess.run(
        [sys.executable, str(GRAFANA / "build_dashboard.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
