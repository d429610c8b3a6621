"""docker-compose.yml and the Grafana provisioning hold the stack's promises without an engine:
nothing private is published, scalable services stay scalable, Grafana has no default password,
and every dashboard panel asks Prometheus something.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import ROOT
from harness.procs import require_binary
from ingest.capture import _flusher as flusher

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

COMPOSE = ROOT / "docker-compose.yml"
GRAFANA = ROOT / "grafana"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
SCALABLE = ("model-server", "dask-worker")
SWITCHES = ("GRAFANA_ANONYMOUS", "ALERTMANAGER_CONFIG")  # variables the stack reads


def compose_config(
    tmp_path: Path, password: str | None, **switches: str
) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` with an empty env file, so no local .env can hide a default;
    ``switches`` are the stack's other variables (``GRAFANA_ANONYMOUS``, ...)."""
    binary = require_binary("docker-compose")
    env = {k: v for k, v in os.environ.items() if k not in {*SWITCHES, "GRAFANA_ADMIN_PASSWORD"}}
    if password is not None:
        env["GRAFANA_ADMIN_PASSWORD"] = password
    env.update(switches)
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
    assert bindings["alertmanager"] == [("127.0.0.1", 9093, 9093)]
    assert bindings["gateway"] == [("", 8002, 8002)]
    assert bindings["grafana"] == [("", 4000, 3000)]


def test_scalable_services_have_no_fixed_name_or_host_port(config):
    for name in SCALABLE:
        svc = config["services"][name]
        assert "container_name" not in svc, name
        assert not published(svc), f"{name} publishes a port: --scale would collide"
    assert config["services"]["dask-worker"]["environment"]["POLARS_MAX_THREADS"] == "1"
    assert "--nthreads" in config["services"]["dask-worker"]["command"]


def test_model_servers_may_raise_their_flusher_from_idle(config):
    # without it the flusher stays at nice 5 (safe, but requests may wait behind a flush)
    nice = config["services"]["model-server"]["ulimits"]["nice"]
    soft = nice["soft"] if isinstance(nice, dict) else nice
    assert int(soft) >= 20 - flusher.NICE


def test_services_have_healthchecks_restart_policies_and_the_shared_warehouse(config):
    services = config["services"]
    for name in (
        "model-server",
        "analytics",
        "gateway",
        "prometheus",
        "pushgateway",
        "dask-scheduler",
    ):
        test = services[name].get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
    assert "/healthz" in " ".join(services["model-server"]["healthcheck"]["test"])
    # the analytics job's check asks its own /healthz, on the port it serves it on
    port = services["analytics"]["environment"]["DRIFTLAKE_HEALTH_ADDRESS"].rsplit(":", 1)[1]
    assert f"127.0.0.1:{port}/healthz" in " ".join(services["analytics"]["healthcheck"]["test"])
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
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"  # GRAFANA_ANONYMOUS=true turns it on
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
    assert targets["/etc/alertmanager/alertmanager.yml"] == ROOT / "prometheus/alertmanager.yml"
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


# ----------------------------------------------------------------------------- hardening

# Where each service's processes write; everything else of its filesystem is read-only.
WRITABLE = {
    "model-server": {"/warehouse", "/tmp"},
    "analytics": {"/warehouse", "/tmp"},
    "dask-scheduler": {"/tmp"},
    "dask-worker": {"/warehouse", "/tmp"},
    "gateway": {"/var/cache/nginx", "/tmp"},
    "pushgateway": set(),
    "prometheus": {"/prometheus"},
    "alertmanager": {"/alertmanager"},
    "grafana": {"/var/lib/grafana", "/tmp"},
}


def writable(service: dict[str, Any]) -> set[str]:
    """The service's tmpfs mounts and named volumes: the places it can write."""
    out = {str(m).split(":")[0] for m in service.get("tmpfs", [])}
    for vol in service.get("volumes", []):
        if isinstance(vol, dict):  # long syntax
            if vol["type"] == "bind":
                assert vol.get("read_only") is True, f"bind mount {vol} is writable"
            elif not vol.get("read_only"):
                out.add(vol["target"])
            continue
        source, target, *mode = str(vol).split(":")
        if not source.startswith(("/", ".")):
            out.add(target)
        else:
            assert mode == ["ro"], f"bind mount {vol} is writable"
    return out


def network_members(config: dict[str, Any]) -> dict[str, set[str]]:
    members: dict[str, set[str]] = {}
    for name, svc in config["services"].items():
        if svc.get("network_mode") == "none":  # no network at all
            continue
        for net in svc.get("networks") or {"default": None}:
            members.setdefault(net, set()).add(name)
    return members


def reachable_from(config: dict[str, Any], service: str) -> set[str]:
    """The other services that share a network with ``service``."""
    nets = config["services"][service].get("networks") or {"default": None}
    return {m for net, ms in network_members(config).items() if net in nets for m in ms} - {service}


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


def test_every_service_drops_every_capability_and_cannot_gain_privileges(config):
    for name, svc in config["services"].items():
        assert svc.get("cap_drop") == ["ALL"], name
        # none needs one back: the gateway binds 8002 as a non-root user, and the model
        # server's flusher priority takes RLIMIT_NICE (ulimits), not CAP_SYS_NICE
        assert not svc.get("cap_add"), (name, svc.get("cap_add"))
        assert "no-new-privileges:true" in svc.get("security_opt", []), name
        assert not svc.get("privileged"), name


def test_every_root_filesystem_is_read_only_and_writes_go_where_meant(config):
    services = config["services"]
    assert set(services) == set(WRITABLE)
    for name, svc in services.items():
        assert svc.get("read_only") is True, name
        assert writable(svc) == WRITABLE[name], name


def test_the_gateway_runs_nginx_without_root(config):
    gw = config["services"]["gateway"]
    assert gw["image"].startswith("nginxinc/nginx-unprivileged:"), gw["image"]
    assert gw["user"].split(":")[0] not in ("", "0", "root")
    conf = (ROOT / "nginx.conf").read_text()
    listen = re.search(r"^\s*listen (\d+);", conf, re.M)
    assert listen and int(listen.group(1)) >= 1024  # no NET_BIND_SERVICE to bind it
    # nginx's prefix (its temp files) and pid file are on the tmpfs mounts
    command = gw["command"]
    prefix = command[command.index("-p") + 1].rstrip("/")
    pid = re.search(r"pid (\S+);", command[command.index("-g") + 1])
    assert pid, command
    tmpfs = {str(m).split(":")[0] for m in gw["tmpfs"]}
    assert {prefix, str(Path(pid.group(1)).parent)} <= tmpfs
    # the container lets nginx open as many files as nginx.conf asks for its connections
    rlimit = int(re.search(r"worker_rlimit_nofile (\d+);", conf).group(1))
    connections = int(re.search(r"worker_connections (\d+);", conf).group(1))
    assert rlimit >= 2 * connections  # a proxied request holds two
    assert int(gw["ulimits"]["nofile"]["soft"]) >= rlimit


def test_prometheus_cannot_be_reloaded_or_stopped_over_http(config):
    command = config["services"]["prometheus"]["command"]
    assert not [
        a for a in command if a.startswith(("--web.enable-lifecycle", "--web.enable-admin"))
    ]


def test_grafana_anonymous_access_is_off_unless_switched_on(tmp_path, config):
    assert config["services"]["grafana"]["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    result = compose_config(tmp_path, "pw", GRAFANA_ANONYMOUS="true")
    assert result.returncode == 0, result.stderr
    env = yaml.safe_load(result.stdout)["services"]["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"  # never more than viewing


def test_scheduler_and_pushgateway_are_reachable_only_by_the_services_that_use_them(config):
    networks = config["networks"]
    members = network_members(config)
    assert "default" not in members, "a service without networks: joins the default one"
    for net in ("dask", "push", "serving"):
        assert networks[net].get("internal") is True, net
    assert reachable_from(config, "dask-scheduler") == {"dask-worker", "analytics", "prometheus"}
    assert reachable_from(config, "pushgateway") == {"analytics", "prometheus"}
    for name in ("dask-scheduler", "pushgateway"):
        for net in config["services"][name]["networks"]:
            assert networks[net].get("internal") or members[net] == {name}, (name, net)
    # model servers have no way out of the host
    assert all(networks[n].get("internal") for n in config["services"]["model-server"]["networks"])
    # and every conversation of the stack still has a network
    for a, b in [
        ("gateway", "model-server"),
        ("prometheus", "model-server"),
        ("prometheus", "pushgateway"),
        ("prometheus", "dask-scheduler"),
        ("prometheus", "alertmanager"),
        ("grafana", "prometheus"),
        ("analytics", "dask-scheduler"),
        ("analytics", "pushgateway"),
        ("analytics", "dask-worker"),
        ("dask-worker", "dask-scheduler"),
    ]:
        assert b in reachable_from(config, a), f"{a} cannot reach {b}"
    # a port is published only through a network that is not internal
    for name, svc in config["services"].items():
        if published(svc):
            assert any(not networks[n].get("internal") for n in svc["networks"]), name


def test_alertmanager_receives_prometheus_alerts_and_can_reach_its_receivers(tmp_path, config):
    am = config["services"]["alertmanager"]
    assert am["image"].startswith("prom/alertmanager:")
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in am["command"]
    assert "--cluster.listen-address=" in am["command"]  # one instance: no gossip port
    assert am["healthcheck"]["test"][0] == "CMD"
    assert any(not config["networks"][n].get("internal") for n in am["networks"])
    prom = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    targets = [
        t
        for am_cfg in prom["alerting"]["alertmanagers"]
        for s in am_cfg["static_configs"]
        for t in s["targets"]
    ]
    assert targets == ["alertmanager:9093"]
    # ALERTMANAGER_CONFIG mounts another config in place of the shipped one
    mine = tmp_path / "my-alertmanager.yml"
    mine.write_text("route: {receiver: x}\nreceivers: [{name: x}]\n")
    result = compose_config(tmp_path, "pw", ALERTMANAGER_CONFIG=str(mine))
    assert result.returncode == 0, result.stderr
    mounts = yaml.safe_load(result.stdout)["services"]["alertmanager"]["volumes"]
    assert f"{mine}:/etc/alertmanager/alertmanager.yml:ro" in mounts


def test_shipped_alertmanager_config_is_valid_and_production_paced():
    amtool = require_binary("amtool")
    path = ROOT / "prometheus" / "alertmanager.yml"
    result = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(path.read_text())
    route = config["route"]
    # the tests shorten these in their own copy; the shipped file must not page every second
    assert seconds(route["group_wait"]) >= 5
    assert seconds(route["group_interval"]) >= 60
    assert seconds(route["repeat_interval"]) >= 3600
    assert {"alertname", "model"} <= set(route["group_by"])
    receiver = next(r for r in config["receivers"] if r["name"] == route["receiver"])
    assert receiver["webhook_configs"][0]["url"].startswith("http")
    assert receiver["webhook_configs"][0]["send_resolved"] is True
