"""The services of harness/multihost.py started each on its own network host, and the
handle to them: start, stop, logs, HTTP and PromQL from the observer host."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from distributed import Client

from harness import _multihost_services as svc
from harness._multihost_dask import connect, wait_for_worker
from harness._multihost_services import Plan
from harness.netns import Network, network
from harness.procs import driftlake_env, stop_process
from harness.s3 import aws_env, new_bucket_name

S3, SCHEDULER, GATEWAY, PUSHGATEWAY, PROMETHEUS, ANALYTICS, CLIENT, OBSERVER = (
    "s3",
    "scheduler",
    "nginx",
    "pushgateway",
    "prometheus",
    "analytics",
    "client",
    "observer",
)
WORKERS = ("worker1", "worker2")
NEW_WORKER = "worker3"  # added while the stream runs
REPLICAS = {"replica1": "r1", "replica2": "r2"}  # host -> replica name
HOSTS = (
    S3,
    SCHEDULER,
    *WORKERS,
    *REPLICAS,
    GATEWAY,
    PUSHGATEWAY,
    PROMETHEUS,
    ANALYTICS,
    CLIENT,
    OBSERVER,
)
BACKFILL = "oneshot"

Say = Callable[[str], None]


@dataclass
class Stack:
    """The running services: ``procs`` by name (a host's, or ``<host>-<what>``)."""

    net: Network
    plan: Plan
    bucket: str = ""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    dask: Client | None = None  # the observer's client of the scheduler

    @property
    def endpoint(self) -> str:
        return self.net.url(S3, svc.S3_PORT)

    @property
    def warehouse(self) -> str:
        return f"s3://{self.bucket}/wh"

    @property
    def scheduler_url(self) -> str:
        return f"tcp://{self.net.addr(SCHEDULER)}:{svc.SCHEDULER_PORT}"

    def env(self, **extra: str) -> dict[str, str]:
        """A service's environment: no inherited DRIFTLAKE_*, AWS profile or proxy; the S3
        server's AWS_* (the warehouse is only its s3:// URL)."""
        env = {
            k: v
            for k, v in driftlake_env().items()
            if not k.lower().endswith("_proxy") and k not in ("AWS_PROFILE", "AWS_SESSION_TOKEN")
        }
        env |= aws_env(self.endpoint)
        return env | {"PYTHONUNBUFFERED": "1", "POLARS_MAX_THREADS": "1", **extra}

    def log(self, name: str) -> Path:
        host = name.split("-", 1)[0]
        return self.net.workdir(host) / f"{name}.log"

    def start(
        self,
        host: str,
        argv: list[str],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in ``host`` in its own session, its output in ``log(name)``; Dask's
        scratch space in the host's directory (its default, /tmp/dask-scratch-space, would
        be every host's)."""
        name = name or host
        scratch = {"DASK_TEMPORARY_DIRECTORY": str(self.net.workdir(host) / "dask-scratch")}
        env = self.env(**scratch, **(env or {}))
        proc = self.net.popen(host, argv, env=env, log=self.log(name), start_new_session=True)
        self.procs[name] = proc
        return proc

    def stop(self, name: str, timeout: float = 30.0) -> int:
        """SIGTERM ``name``'s process group, SIGKILL after ``timeout``; its exit code."""
        return stop_process(self.procs[name], timeout, group=True)

    def tail(self, name: str, chars: int = 3000) -> str:
        log = self.log(name)
        return log.read_text(errors="replace")[-chars:] if log.exists() else ""

    def get(self, url: str, params: Mapping[str, str] | None = None) -> httpx.Response:
        """GET ``url`` from the observer host."""
        with self.net.enter(OBSERVER):
            return httpx.get(url, params=params, timeout=5, trust_env=False)

    def wait_http(self, name: str, url: str, timeout: float = 60.0) -> None:
        """Wait until ``url`` answers 200 to the observer; fail with ``name``'s log as soon
        as its process exits, or at ``timeout``."""
        proc = self.procs[name]
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode} before {url} answered\n{self.tail(name)}"
                )
            with suppress(httpx.TransportError):
                if self.get(url).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer 200 in {timeout:g}s\n{self.tail(name)}")
            time.sleep(0.1)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """A PromQL instant query against Prometheus; the result vector."""
        url = self.net.url(PROMETHEUS, svc.PROMETHEUS_PORT, "/api/v1/query")
        body = self.get(url, {"query": expr}).json()
        if body.get("status") != "success":
            raise ValueError(f"PromQL {expr!r} failed: {body}")
        return body["data"]["result"]

    def wait_query(
        self, expr: str, ok: Callable[[list[dict[str, Any]]], bool], timeout: float
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if ok(result):
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus: {expr!r} still {result} after {timeout:g}s")
            time.sleep(0.25)

    def host_of(self, address: str) -> str:
        """The host a Dask address (``tcp://ip:port``) is on."""
        ip = address.split("://")[-1].rsplit(":", 1)[0]
        return next(h for h in self.net.hosts if self.net.addr(h) == ip)


@contextmanager
def multihost_stack(tmp_dir: Path, plan: Plan | None = None, say: Say = print) -> Iterator[Stack]:
    """Start every service on its own host under ``tmp_dir``; on exit close the observer's
    client and kill everything left in the run's namespaces (then delete them)."""
    binaries = svc.binaries()
    with network(HOSTS, tmp_dir=tmp_dir) as net:
        stack = Stack(net, plan or Plan())
        try:
            _start(stack, binaries, say)
            yield stack
        finally:
            if stack.dask is not None:
                stack.dask.close(timeout=10)


def _start(stack: Stack, binaries: Mapping[str, str], say: Say) -> None:
    net, plan, addr = stack.net, stack.plan, stack.net.addr
    started = time.monotonic()
    stack.start(S3, svc.moto(addr(S3)))
    stack.start(SCHEDULER, svc.scheduler(addr(SCHEDULER)))
    for host in WORKERS:
        stack.start(host, svc.worker(stack.scheduler_url, addr(host), host))
    pgw = svc.pushgateway(
        binaries["prometheus-pushgateway"], net.workdir(PUSHGATEWAY), addr(PUSHGATEWAY)
    )
    stack.start(PUSHGATEWAY, pgw)
    targets = {
        "model-server": [f"{addr(h)}:{svc.MODEL_PORT}" for h in REPLICAS],
        "pushgateway": [f"{addr(PUSHGATEWAY)}:{svc.PUSHGATEWAY_PORT}"],
        "dask-scheduler": [f"{addr(SCHEDULER)}:{svc.SCHEDULER_HTTP_PORT}"],
        "analytics": [f"{addr(ANALYTICS)}:{svc.HEALTH_PORT}"],
    }
    prom = svc.prometheus(
        binaries["prometheus"], net.workdir(PROMETHEUS), addr(PROMETHEUS), targets
    )
    stack.start(PROMETHEUS, prom)
    backends = [f"{addr(h)}:{svc.MODEL_PORT}" for h in REPLICAS]
    nginx = svc.nginx(binaries["nginx"], net.workdir(GATEWAY), addr(GATEWAY), backends)
    checked = net.run(GATEWAY, [*nginx, "-t"], timeout=30)
    if checked.returncode:
        raise RuntimeError(f"nginx -t rejected the rendered config:\n{checked.stderr}")
    stack.start(GATEWAY, nginx)

    stack.wait_http(S3, net.url(S3, svc.S3_PORT, "/moto-api/"))
    stack.bucket = new_bucket_name()
    with net.enter(OBSERVER):  # moto takes an unsigned PUT /<bucket>
        httpx.put(
            f"{stack.endpoint}/{stack.bucket}", timeout=10, trust_env=False
        ).raise_for_status()
    for host, replica in REPLICAS.items():  # both train the default model: same result
        stack.start(host, svc.model_server(addr(host), stack.warehouse, replica, plan))

    stack.wait_http(PUSHGATEWAY, net.url(PUSHGATEWAY, svc.PUSHGATEWAY_PORT, "/-/ready"))
    stack.wait_http(PROMETHEUS, net.url(PROMETHEUS, svc.PROMETHEUS_PORT, "/-/ready"))
    stack.wait_http(GATEWAY, net.url(GATEWAY, svc.GATEWAY_PORT, "/nginx-health"))
    net.wait_port(OBSERVER, addr(SCHEDULER), svc.SCHEDULER_PORT, 60, proc=stack.procs[SCHEDULER])
    stack.dask = connect(net, OBSERVER, stack.scheduler_url)
    for host in WORKERS:
        wait_for_worker(stack.dask, addr(host), present=True, timeout=90)
    for host in REPLICAS:
        stack.wait_http(host, net.url(host, svc.MODEL_PORT, "/healthz"), timeout=120)
    pushgateway_url = net.url(PUSHGATEWAY, svc.PUSHGATEWAY_PORT)
    driver = svc.analytics(
        addr(ANALYTICS), stack.warehouse, stack.scheduler_url, pushgateway_url, plan
    )
    stack.start(ANALYTICS, driver)
    net.wait_port(OBSERVER, addr(ANALYTICS), svc.HEALTH_PORT, 60, proc=stack.procs[ANALYTICS])
    say(
        f"started in {time.monotonic() - started:.1f}s; warehouse {stack.warehouse} at "
        f"{stack.endpoint}; every host's directory is under {net.tmp_dir}:"
    )
    for host in net.hosts:
        say(f"  {host:<12} {addr(host):<14} {net.workdir(host)}")
