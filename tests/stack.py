"""Run the stack's own nginx, Prometheus, Pushgateway and Alertmanager natively, on loopback.

Each ``*_running`` function is a context manager that starts the real binary with the repo's
config (only addresses rewritten), waits for it to answer with a deadline, and always stops it.

- ``gateway_running``: ``nginx.conf`` as shipped. ``model-server`` is resolved through a loopback
  DNS stub (:class:`tests.dns_stub.DnsStub`) that stands in for Docker's embedded DNS, so
  replicas are loopback addresses sharing one port (``127.0.0.2:P``, ``127.0.0.3:P``) and can be
  added while it runs, exactly like ``--scale``. ``static_backends`` instead pins ``host:port``
  servers in an upstream block, for machines where only 127.0.0.1 exists.
- ``prometheus_running``: ``prometheus/prometheus.yml`` with each job's service discovery replaced
  by static loopback targets, the repo's rule files, and (if given) a loopback Alertmanager.
- ``pushgateway_running``: the Pushgateway on a free loopback port.
- ``alertmanager_running``: ``prometheus/alertmanager.yml`` with its receivers' webhook URL
  pointed at a test's receiver and its grouping waits shortened.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import ROOT, free_port, require_binary
from tests.dns_stub import DnsStub

NGINX_CONF = ROOT / "nginx.conf"
PROMETHEUS_DIR = ROOT / "prometheus"
ALERTMANAGER_CONF = PROMETHEUS_DIR / "alertmanager.yml"
START_TIMEOUT = 20.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxies


def free_port_on(hosts: Sequence[str]) -> int:
    """Return a TCP port that is free on every one of ``hosts`` (loopback addresses)."""
    for _ in range(50):
        port = free_port()
        try:
            for host in hosts:
                with socket.socket() as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no TCP port free on all of {list(hosts)} after 50 tries")


@dataclass
class Service:
    """A started binary: where it listens and where its output goes."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a child started in its own session: TERM its group, then KILL after 5 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    else:  # the master is gone; make sure no worker of its group outlives it
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@contextmanager
def _running(name: str, argv: list[str], workdir: Path, port: int, ready_path: str):
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
        )
    service = Service(name, port, proc, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode} before it was ready; "
                    f"argv={argv}\n{service.log_tail()}"
                )
            try:
                with _OPENER.open(service.url + ready_path, timeout=1) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{name} did not answer 200 on {ready_path} within {START_TIMEOUT:.0f}s\n"
                    f"{service.log_tail()}"
                )
            time.sleep(0.05)
        yield service
    finally:
        _stop(proc)


# ----------------------------------------------------------------------------- nginx

_MARK_START = "# --- upstream:"
_MARK_END = "# --- end upstream ---"


def _sub_once(pattern: str, repl: str, text: str, what: str) -> str:
    new, n = re.subn(pattern, repl, text)
    if n != 1:
        raise ValueError(
            f"nginx.conf: expected exactly one {what} between the upstream markers, found {n}; "
            "update tests/stack.py together with nginx.conf"
        )
    return new


def render_nginx_conf(
    text: str,
    *,
    listen: str,
    resolver: str | None = None,
    model_server_port: int | None = None,
    static_backends: Sequence[str] | None = None,
) -> str:
    """Rewrite only the addresses in the marked upstream block of ``nginx.conf``.

    ``listen`` replaces the listen address; ``resolver`` the DNS server (``host:port``) and
    ``model_server_port`` the replicas' port, keeping the dynamic DNS path of production. With
    ``static_backends`` (``host:port`` strings) ``$model_servers`` names an upstream block of
    those servers instead.
    """
    start, end = text.find(_MARK_START), text.find(_MARK_END)
    if start < 0 or end < start:
        raise ValueError("nginx.conf lost its '# --- upstream:' ... '# --- end upstream ---' block")
    block = text[start:end]
    block = _sub_once(r"listen [^;]+;", f"listen {listen};", block, "listen")
    if resolver is not None:
        block = _sub_once(r"resolver \S+", f"resolver {resolver}", block, "resolver")
    if model_server_port is not None:
        block = _sub_once(
            r"(set \$model_servers model-server):\d+;",
            rf"\g<1>:{model_server_port};",
            block,
            "set $model_servers model-server:PORT",
        )
    out = text[:start] + block + text[end:]
    if static_backends:
        out = _sub_once(
            r"set \$model_servers [^;]+;", "set $model_servers model_servers;", out, "set"
        )
        servers = "".join(f"        server {b};\n" for b in static_backends)
        upstream = f"    upstream model_servers {{\n{servers}        keepalive 16;\n    }}\n\n"
        out = _sub_once(r"\nhttp \{\n", "\nhttp {\n" + upstream, out, "http block")
    return out


@dataclass
class Gateway(Service):
    """A running nginx gateway; ``dns`` is the stub that resolves ``model-server`` (DNS mode)."""

    dns: DnsStub | None = field(default=None)
    conf: Path | None = field(default=None)


@contextmanager
def gateway_running(
    workdir: Path,
    *,
    replicas: Sequence[str] = (),
    replica_port: int | None = None,
    static_backends: Sequence[str] | None = None,
) -> Iterator[Gateway]:
    """Run ``nginx.conf`` on a free loopback port in front of loopback model servers.

    DNS mode (production's path): ``replicas`` are loopback addresses (``127.0.0.2``, ...) all
    listening on ``replica_port``; change them live with ``gateway.dns.set("model-server",
    [...])``. Static mode: ``static_backends=["127.0.0.1:8101", ...]``.
    """
    nginx = require_binary("nginx")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with DnsStub({"model-server": list(replicas)}) as dns:
        text = render_nginx_conf(
            NGINX_CONF.read_text(),
            listen=f"127.0.0.1:{port}",
            resolver=f"127.0.0.1:{dns.port}",
            model_server_port=replica_port if not static_backends else None,
            static_backends=static_backends,
        )
        conf = workdir / "nginx.conf"
        conf.write_text(text)
        prefix = f"{workdir.resolve()}/"
        directives = f"daemon off; pid {prefix}nginx.pid; error_log {prefix}error.log warn;"
        if os.geteuid() == 0:  # workers would run as nobody and not reach the tmpdir
            directives += " user root;"
        argv = [nginx, "-p", prefix, "-c", str(conf), "-g", directives]
        check = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t rejected the rendered config:\n{check.stderr}")
        with _running("nginx", argv, workdir, port, "/nginx-health") as svc:
            yield Gateway(svc.name, svc.port, svc.process, svc.log, dns=dns, conf=conf)


# ----------------------------------------------------------------------------- Prometheus


def render_prometheus_config(
    targets: Mapping[str, Sequence[str]],
    *,
    self_target: str,
    scrape_interval: str | None = None,
    evaluation_interval: str | None = None,
    alertmanagers: Sequence[str] = (),
) -> dict[str, Any]:
    """``prometheus/prometheus.yml`` with service discovery replaced by static targets.

    ``targets`` maps a job name of the file (``model-server``, ``pushgateway``,
    ``dask-scheduler``) to ``host:port`` targets; jobs not named are dropped, except
    ``prometheus`` itself, which scrapes ``self_target``. Rule files become absolute paths.
    Alerts go to the ``alertmanagers`` (``host:port``); without any, the alerting section
    is dropped.
    """
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {sc["job_name"] for sc in config["scrape_configs"]}
    unknown = set(targets) - jobs
    if unknown:
        raise ValueError(f"no scrape job {sorted(unknown)} in prometheus.yml; jobs: {sorted(jobs)}")
    kept = []
    for sc in config["scrape_configs"]:
        job = sc["job_name"]
        static = [self_target] if job == "prometheus" else targets.get(job)
        if not static:
            continue
        sc = {k: v for k, v in sc.items() if not k.endswith("_sd_configs")}
        sc["static_configs"] = [{"targets": list(static)}]
        kept.append(sc)
    config["scrape_configs"] = kept
    config["rule_files"] = [
        str(path)
        for pattern in config.get("rule_files", [])
        for path in PROMETHEUS_DIR.glob(pattern)
    ]
    if scrape_interval:
        config["global"]["scrape_interval"] = scrape_interval
        config["global"].pop("scrape_timeout", None)  # must not exceed the interval
        for sc in kept:
            sc.pop("scrape_interval", None)
            sc.pop("scrape_timeout", None)
    if evaluation_interval:
        config["global"]["evaluation_interval"] = evaluation_interval
    if not config.get("alerting", {}).get("alertmanagers"):
        raise ValueError("prometheus.yml sends alerts nowhere: it lost its alerting section")
    if alertmanagers:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]
        }
    else:
        del config["alerting"]
    return config


def render_rules(directory: Path, alert_for: Mapping[str, str]) -> list[str]:
    """Copy the repo's rule files into ``directory`` with the ``for:`` of the named alerts
    replaced (a test's clock runs in seconds); return the copies' paths."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    directory.mkdir(parents=True, exist_ok=True)
    out, seen = [], set()
    for pattern in config.get("rule_files", []):
        for path in sorted(PROMETHEUS_DIR.glob(pattern)):
            rules = yaml.safe_load(path.read_text())
            for group in rules["groups"]:
                for rule in group["rules"]:
                    if rule.get("alert") in alert_for:
                        rule["for"] = alert_for[rule["alert"]]
                        seen.add(rule["alert"])
            copy = directory / path.name
            copy.write_text(yaml.safe_dump(rules, sort_keys=False))
            out.append(str(copy))
    if set(alert_for) - seen:
        raise ValueError(f"no alert named {sorted(set(alert_for) - seen)} in the rule files")
    return out


@dataclass
class Prometheus(Service):
    """A running Prometheus with query helpers."""

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; returns the result vector, raises on a PromQL error."""
        resp = httpx.get(
            f"{self.url}/api/v1/query", params={"query": expr}, timeout=5, trust_env=False
        )
        body = resp.json()
        if body.get("status") != "success":
            raise ValueError(f"PromQL {expr!r} failed: {body.get('error', body)}")
        return body["data"]["result"]

    def wait_for(
        self,
        expr: str,
        ok: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 20.0,
    ) -> list[dict[str, Any]]:
        """Poll ``expr`` until ``ok(result)``; raise with the last result after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if ok(result):
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expr!r} still {result} after {timeout:.0f}s")
            time.sleep(0.2)

    def alerts(self) -> list[dict[str, Any]]:
        resp = httpx.get(f"{self.url}/api/v1/alerts", timeout=5, trust_env=False)
        return resp.json()["data"]["alerts"]


@contextmanager
def prometheus_running(
    workdir: Path,
    targets: Mapping[str, Sequence[str]],
    *,
    scrape_interval: str | None = "1s",
    evaluation_interval: str | None = "1s",
    alertmanagers: Sequence[str] = (),
    alert_for: Mapping[str, str] | None = None,
) -> Iterator[Prometheus]:
    """Run Prometheus with the repo's config and rules, scraping loopback ``targets``.

    Alerts go to ``alertmanagers`` (``host:port``), if any; ``alert_for`` maps alert names to
    a shorter ``for:`` duration, in a copy of the rule files.
    """
    binary = require_binary("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = render_prometheus_config(
        targets,
        self_target=f"127.0.0.1:{port}",
        scrape_interval=scrape_interval,
        evaluation_interval=evaluation_interval,
        alertmanagers=alertmanagers,
    )
    if alert_for:
        config["rule_files"] = render_rules(workdir / "rules", alert_for)
    conf = workdir / "prometheus.yml"
    conf.write_text(yaml.safe_dump(config, sort_keys=False))
    argv = [
        binary,
        f"--config.file={conf}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with _running("prometheus", argv, workdir, port, "/-/ready") as svc:
        yield Prometheus(svc.name, svc.port, svc.process, svc.log)


@contextmanager
def pushgateway_running(workdir: Path) -> Iterator[Service]:
    """Run the Pushgateway (Debian's ``prometheus-pushgateway``) on a free loopback port."""
    binary = require_binary("prometheus-pushgateway")
    port = free_port()
    # Debian's build persists to /var/lib/prometheus by default: every test gets its own file
    argv = [
        binary,
        f"--web.listen-address=127.0.0.1:{port}",
        f"--persistence.file={workdir / f'pushgateway-{port}.data'}",
        "--log.level=warn",
    ]
    with _running("pushgateway", argv, workdir, port, "/-/ready") as svc:
        yield svc


# ----------------------------------------------------------------------------- Alertmanager


def render_alertmanager_config(
    webhook_url: str,
    *,
    group_wait: str | None = None,
    group_interval: str | None = None,
) -> dict[str, Any]:
    """``prometheus/alertmanager.yml`` with every webhook receiver's URL set to ``webhook_url``
    and, if given, the top route's ``group_wait`` and ``group_interval`` replaced."""
    config = yaml.safe_load(ALERTMANAGER_CONF.read_text())
    hooks = [
        hook for receiver in config["receivers"] for hook in receiver.get("webhook_configs", [])
    ]
    if not hooks:
        raise ValueError("alertmanager.yml has no webhook receiver for a test to stand in for")
    for hook in hooks:
        hook["url"] = webhook_url
    if group_wait:
        config["route"]["group_wait"] = group_wait
    if group_interval:
        config["route"]["group_interval"] = group_interval
    return config


@contextmanager
def alertmanager_running(
    workdir: Path,
    webhook_url: str,
    *,
    group_wait: str | None = "1s",
    group_interval: str | None = "1s",
) -> Iterator[Service]:
    """Run Alertmanager (Debian's ``prometheus-alertmanager``) with the repo's config, its
    webhook receivers sending to ``webhook_url``; one instance, no cluster listener."""
    binary = require_binary("prometheus-alertmanager")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "alertmanager.yml"
    config = render_alertmanager_config(
        webhook_url, group_wait=group_wait, group_interval=group_interval
    )
    conf.write_text(yaml.safe_dump(config, sort_keys=False))
    argv = [
        binary,
        f"--config.file={conf}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    with _running("alertmanager", argv, workdir, port, "/-/ready") as svc:
        yield svc
