"""The shipped ``nginx.conf``, run by the real nginx on loopback in front of test replicas.

``model-server`` is resolved through a loopback DNS stub (:class:`harness.dns_stub.DnsStub`)
that stands in for Docker's embedded DNS, so replicas are loopback addresses sharing one port
(``127.0.0.2:P``, ``127.0.0.3:P``) and can be added while it runs, exactly like ``--scale``.
``static_backends`` instead pins ``host:port`` servers in an upstream block, for machines where
only 127.0.0.1 exists. Only the addresses in the config are rewritten.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness import ROOT
from harness.dns_stub import DnsStub
from harness.procs import Process, binary_running, free_port, require_binary

NGINX_CONF = ROOT / "nginx.conf"

_MARK_START = "# --- upstream:"
_MARK_END = "# --- end upstream ---"


def _sub_once(pattern: str, repl: str, text: str, what: str) -> str:
    new, n = re.subn(pattern, repl, text)
    if n != 1:
        raise ValueError(
            f"nginx.conf: expected exactly one {what} between the upstream markers, found {n}; "
            "update harness/nginx.py together with nginx.conf"
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
class Gateway(Process):
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
        with binary_running("nginx", argv, workdir, port, "/nginx-health") as svc:
            yield Gateway(
                svc.name, port, svc.proc, svc.log_path, own_session=True, dns=dns, conf=conf
            )
