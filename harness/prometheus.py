"""Prometheus and the Pushgateway, run natively on loopback with the repository's config.

``prometheus_running`` runs ``prometheus/prometheus.yml`` with each job's service discovery
replaced by static loopback targets, the repo's rule files, and (if given) a loopback
Alertmanager; ``pushgateway_running`` runs the Pushgateway on a free loopback port.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from harness import ROOT
from harness.procs import Process, binary_running, free_port, require_binary

PROMETHEUS_DIR = ROOT / "prometheus"


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
class Prometheus(Process):
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


def command(binary: str, port: int, flags: Mapping[str, object]) -> list[str]:
    """The argv of one of the Prometheus project's binaries listening on ``127.0.0.1:port``
    and logging warnings only, with ``flags`` as ``--name=value``."""
    listen = [f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    return [binary, *listen, *(f"--{name}={value}" for name, value in flags.items())]


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
    argv = command(binary, port, {"config.file": conf, "storage.tsdb.path": workdir / "data"})
    with binary_running("prometheus", argv, workdir, port, "/-/ready") as svc:
        yield Prometheus(svc.name, port, svc.proc, svc.log_path, own_session=True)


@contextmanager
def pushgateway_running(workdir: Path) -> Iterator[Process]:
    """Run the Pushgateway (Debian's ``prometheus-pushgateway``) on a free loopback port."""
    binary = require_binary("prometheus-pushgateway")
    port = free_port()
    # Debian's build persists to /var/lib/prometheus by default: every test gets its own file
    argv = command(binary, port, {"persistence.file": workdir / f"pushgateway-{port}.data"})
    with binary_running("pushgateway", argv, workdir, port, "/-/ready") as svc:
        yield svc
