"""The command lines and config files of each service of harness/multihost.py.

Every service listens on its own host's address at a fixed port (each network host has its
own port space, so fixed ports never collide). Only argv and files here: starting, waiting
and stopping are harness/multihost.py's.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness import MODEL, REFERENCE, ROOT
from harness.nginx import NGINX_CONF, render_nginx_conf
from harness.prometheus import render_prometheus_config

S3_PORT = 5000
SCHEDULER_PORT = 8786
SCHEDULER_HTTP_PORT = 8787  # the scheduler's dashboard port also serves /metrics
WORKER_PORT, NANNY_PORT, WORKER_HTTP_PORT = 8790, 8791, 8789
MODEL_PORT = 8000
GATEWAY_PORT = 8002  # nginx.conf's own listen port
HEALTH_PORT = 8788  # the analytics job's /healthz and /metrics
PUSHGATEWAY_PORT = 9091
PROMETHEUS_PORT = 9090

BINARIES = ("nginx", "prometheus", "prometheus-pushgateway")
_SBIN = ":/usr/sbin:/sbin"  # Debian installs nginx there, off a user's PATH

PY = sys.executable


@dataclass(frozen=True)
class Plan:
    """The run's sizes. The defaults stream 4,500 rows in 30 s (150 rows/s): 45 windows of
    100 rows, tested every 2 s, ~3 windows per cycle."""

    window_size: int = 100
    requests: int = 900  # run.py requests ...
    batch: int = 5  # ... of this many rows ...
    rate: float = 30.0  # ... at this many requests per second
    seed: int = 0
    interval: float = 2.0  # seconds between analytics cycles
    # a replica whose newest landed row is older than this no longer holds the watermark
    # back: far above a flush (flush_interval + an S3 PUT), so no row is ever late
    max_lateness: float = 5.0
    flush_interval: float = 0.5

    @property
    def rows(self) -> int:
        return self.requests * self.batch

    @property
    def drift_start_row(self) -> int:
        """The first shifted row of the stream (run.py's default ``--drift-start`` 0.25)."""
        return int(self.rows * 0.25)

    @property
    def seconds(self) -> float:
        return self.requests / self.rate


def binaries() -> dict[str, str]:
    """The Debian binaries the stack runs, by name; raises naming the missing ones."""
    found = {b: shutil.which(b, path=os.environ.get("PATH", "") + _SBIN) for b in BINARIES}
    missing = [b for b, path in found.items() if path is None]
    if missing:
        raise RuntimeError(
            f"not installed: {', '.join(missing)} (apt-get install -y nginx prometheus "
            "prometheus-pushgateway)"
        )
    return {b: path for b, path in found.items() if path is not None}


def moto(addr: str) -> list[str]:
    return [PY, "-m", "moto.server", "-H", addr, "-p", str(S3_PORT)]


def scheduler(addr: str) -> list[str]:
    return [
        PY, "-m", "distributed.cli.dask_scheduler",
        "--host", addr, "--port", str(SCHEDULER_PORT),
        "--dashboard-address", f"{addr}:{SCHEDULER_HTTP_PORT}",
    ]  # fmt: skip


def worker(scheduler_url: str, addr: str, name: str) -> list[str]:
    """A nanny and one single-threaded worker process."""
    return [
        PY, "-m", "distributed.cli.dask_worker", scheduler_url,
        "--host", addr, "--worker-port", str(WORKER_PORT), "--nanny-port", str(NANNY_PORT),
        "--dashboard-address", f"{addr}:{WORKER_HTTP_PORT}",
        "--nworkers", "1", "--nthreads", "1", "--name", name,
    ]  # fmt: skip


def model_server(addr: str, warehouse: str, replica: str, plan: Plan) -> list[str]:
    return [
        PY, "-m", "serving", "--host", addr, "--port", str(MODEL_PORT),
        "--warehouse", warehouse, "--reference", str(REFERENCE), "--replica", replica,
        "--flush-interval", str(plan.flush_interval),
    ]  # fmt: skip


def analytics(
    addr: str, warehouse: str, scheduler_url: str, pushgateway_url: str, plan: Plan
) -> list[str]:
    return [
        PY, "-m", "analytics", "run", "--warehouse", warehouse, "--model-name", MODEL,
        "--reference-path", str(REFERENCE), "--scheduler", scheduler_url,
        "--pushgateway", pushgateway_url, "--window-size", str(plan.window_size),
        "--interval", str(plan.interval), "--max-lateness", str(plan.max_lateness),
        "--health-address", f"{addr}:{HEALTH_PORT}",
    ]  # fmt: skip


def backfill(warehouse: str, name: str, plan: Plan) -> list[str]:
    """A one-shot backfill of the whole landing zone on a local Dask cluster of one worker
    (on the host's own loopback): independent of the multi-host cluster."""
    return [
        PY, "-m", "analytics", "backfill", "--name", name, "--warehouse", warehouse,
        "--model-name", MODEL, "--reference-path", str(REFERENCE),
        "--window-size", str(plan.window_size), "--scheduler", "none",
        "--n-workers", "1", "--dashboard-address", "none",
    ]  # fmt: skip


def stream(gateway_url: str, workdir: Path, plan: Plan) -> list[str]:
    """``run.py --drift true`` through the gateway. ``--warehouse`` points into ``workdir``:
    should the gateway not answer, run.py's embedded fallback writes there (and the run
    fails, as its output does not say it streamed to the gateway)."""
    return [
        PY, str(ROOT / "run.py"), "--url", gateway_url, "--drift", "true",
        "--requests", str(plan.requests), "--batch", str(plan.batch),
        "--rate", str(plan.rate), "--seed", str(plan.seed),
        "--warehouse", str(workdir / "embedded-fallback"),
    ]  # fmt: skip


def nginx(binary: str, workdir: Path, addr: str, backends: Sequence[str]) -> list[str]:
    """The shipped nginx.conf listening on ``addr`` with its upstream pinned to
    ``backends`` (``host:port``); written to ``workdir``, which is nginx's prefix. As
    harness/nginx.py's gateway, with an address of its host instead of loopback."""
    text = render_nginx_conf(
        NGINX_CONF.read_text(), listen=f"{addr}:{GATEWAY_PORT}", static_backends=backends
    )
    conf = workdir / "nginx.conf"
    conf.write_text(text)
    prefix = f"{workdir.resolve()}/"
    directives = f"daemon off; pid {prefix}nginx.pid; error_log {prefix}error.log warn;"
    if os.geteuid() == 0:  # workers would run as nobody and not reach the workdir
        directives += " user root;"
    return [binary, "-p", prefix, "-c", str(conf), "-g", directives]


def pushgateway(binary: str, workdir: Path, addr: str) -> list[str]:
    # Debian's build persists to /var/lib/prometheus by default: this run's file instead
    return [
        binary, f"--web.listen-address={addr}:{PUSHGATEWAY_PORT}", "--log.level=warn",
        f"--persistence.file={workdir / 'pushgateway.data'}",
    ]  # fmt: skip


def prometheus(
    binary: str, workdir: Path, addr: str, targets: Mapping[str, Sequence[str]]
) -> list[str]:
    """The shipped prometheus.yml and rules, each job scraping ``targets`` every second
    (see :func:`harness.prometheus.render_prometheus_config`)."""
    config = render_prometheus_config(
        targets,
        self_target=f"{addr}:{PROMETHEUS_PORT}",
        scrape_interval="1s",
        evaluation_interval="1s",
    )
    conf = workdir / "prometheus.yml"
    conf.write_text(yaml.safe_dump(config, sort_keys=False))
    return [
        binary, f"--web.listen-address={addr}:{PROMETHEUS_PORT}", "--log.level=warn",
        f"--config.file={conf}", f"--storage.tsdb.path={workdir / 'data'}",
    ]  # fmt: skip
