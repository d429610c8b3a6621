"""Alertmanager, run natively on loopback with ``prometheus/alertmanager.yml``, its receivers'
webhook URL pointed at a test's receiver and its grouping waits shortened."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from harness.procs import Process, binary_running, free_port, require_binary
from harness.prometheus import PROMETHEUS_DIR, command

ALERTMANAGER_CONF = PROMETHEUS_DIR / "alertmanager.yml"


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
) -> Iterator[Process]:
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
    flags = {"config.file": conf, "storage.path": workdir / "data", "cluster.listen-address": ""}
    argv = command(binary, port, flags)
    with binary_running("alertmanager", argv, workdir, port, "/-/ready") as svc:
        yield svc
