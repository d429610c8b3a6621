"""Drive a server with wrk (Debian's ``wrk``): POST prebuilt JSON bodies, read its summary."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# wrk runs this Lua per thread: requests are formatted once in init() and cycled through;
# done() prints one JSON line the benchmark parses, and the whole latency histogram (wrk
# keeps a count per microsecond; latency(i) is the i-th non-empty one) so rounds can be
# pooled: a percentile of percentiles is not a percentile.
LUA = """
local bodies = {%(bodies)s}
local reqs = {}
local i = 0
function init(args)
  for k, body in ipairs(bodies) do
    reqs[k] = wrk.format("POST", "%(path)s", {["Content-Type"] = "application/json"}, body)
  end
end
function request()
  i = i %% #reqs + 1
  return reqs[i]
end
function done(summary, latency, requests)
  io.write(string.format(
    '\\nWRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"mean_us": %%.1f, "connect": %%d, "read": %%d, "write": %%d, "status": %%d, ' ..
    '"timeout": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout))
  local hist = {}
  for k = 1, #latency do
    local us, count = latency(k)
    hist[k] = string.format("%%d:%%d", us, count)
  end
  io.write("WRKHIST " .. table.concat(hist, " ") .. "\\n")
end
"""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: completed requests and their latency percentiles."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors + non-2xx/3xx answers + timeouts
    # every request's latency: distinct values (us, ascending) and how many had each
    latency_us: np.ndarray = field(repr=False)
    latency_counts: np.ndarray = field(repr=False)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    return path


def write_script(bodies: list[bytes], path: str = "/get-prediction") -> Path:
    """Write the Lua script posting ``bodies`` in turn; returns its path."""
    # JSON never holds "]==]", so a level-2 long bracket quotes any body verbatim
    quoted = ",\n".join(f"[==[{b.decode()}]==]" for b in bodies)
    fd, name = tempfile.mkstemp(prefix="driftlake-wrk-", suffix=".lua")
    with open(fd, "w") as fh:
        fh.write(LUA % {"bodies": quoted, "path": path})
    return Path(name)


def run(
    url: str,
    script: Path,
    connections: int,
    seconds: float,
    threads: int = 1,
    cpus: set[int] | None = None,
) -> WrkResult:
    """Run wrk against ``url`` for ``seconds`` with ``connections`` kept-alive connections.

    With ``cpus``, wrk runs on those CPUs only.
    """
    pin = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []
    cmd = [
        *pin,
        require_wrk(),
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, check=True)
    lines = out.stdout.splitlines()
    s = json.loads(next(x for x in lines if x.startswith("WRKJSON ")).removeprefix("WRKJSON "))
    hist = next(x for x in lines if x.startswith("WRKHIST")).removeprefix("WRKHIST").split()
    pairs = np.array([pair.split(":") for pair in hist], np.int64).reshape(-1, 2)
    errors = s["connect"] + s["read"] + s["write"] + s["status"] + s["timeout"]
    return WrkResult(
        requests=s["requests"],
        seconds=s["duration_us"] / 1e6,
        p50_ms=s["p50_us"] / 1e3,
        p99_ms=s["p99_us"] / 1e3,
        errors=errors,
        latency_us=pairs[:, 0],
        latency_counts=pairs[:, 1],
    )
