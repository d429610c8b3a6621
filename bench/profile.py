"""Where a model server's time goes under load: py-spy samples grouped into a few buckets.

Run with ``uv run --with py-spy python -m bench.profile --config on --model default
--batch 1 --connections 8`` (py-spy is not a project dependency; ``--with`` brings it for
the run). Starts one server of the serving benchmark (``off``, ``on``, ``fwd`` or ``bare``),
warms it up, then drives it with wrk for ``--duration`` seconds while py-spy samples every
thread (``--nonblocking``: the server is never paused). Each sample is put in the bucket of
the innermost frame that names one (model, JSON parsing and validation, capture, landing
writer thread, HTTP client, metrics, server and framework, event loop); the table shows
each bucket's share of the samples and its CPU time per request.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench import wrk
from bench.serving import bodies, start_servers, train_forest

# (bucket, substrings of a frame), tried from the innermost frame outwards
BUCKETS = (
    ("model predict", ("serving/model.py", "sklearn/", "scipy/", "numpy/")),
    ("JSON parse + validation", ("serving/request.py", "pydantic", "bench/procs.py")),
    ("capture (request path)", ("serving/capture.py", "ingest/writer.py")),
    ("forwarding HTTP client", ("httpx/", "httpcore/", "ssl.py", "anyio/", "certifi")),
    ("metrics", ("serving/metrics.py", "prometheus_client/")),
    ("handler (ids, response JSON)", ("serving/app.py", "bench/bare.py", "baseline_")),
    (
        "uvicorn + starlette + fastapi",
        ("uvicorn/", "starlette/", "fastapi/", "h11", "httptools", "contextlib.py"),
    ),
    ("event loop", ("asyncio/", "uvloop")),
)


def bucket_of(stack: list[str]) -> str:
    if "landing-writer" in stack[0]:
        return "landing writer thread"
    for frame in reversed(stack[1:]):
        for name, needles in BUCKETS:
            if any(n in frame for n in needles):
                return name
    return "other"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="on", choices=["off", "on", "fwd", "bare"])
    parser.add_argument("--model", default="default", choices=["default", "forest"])
    parser.add_argument("--batch", type=int, default=1, help="rows per request")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy not found: run with `uv run --with py-spy python -m ...`")
    work = Path(tempfile.mkdtemp(prefix="driftlake-bench-profile-"))
    model_path = train_forest(work / "forest.joblib") if args.model == "forest" else None
    servers = start_servers(model_path, work, args.model)
    try:
        server = servers.by_config[args.config]
        script = wrk.write_script(bodies(args.batch))
        url = server.url + "/get-prediction"
        wrk.run(url, script, args.connections, 2)  # warm-up
        raw = work / "samples.txt"
        # fmt: off
        recorder = subprocess.Popen(
            [spy, "record", "-p", str(server.proc.pid), "-d", str(int(args.duration) + 1),
             "-r", str(args.rate), "-f", "raw", "--threads", "--nonblocking", "-o", str(raw)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        # fmt: on
        time.sleep(0.5)
        cpu0 = server.cpu_seconds()
        result = wrk.run(url, script, args.connections, args.duration)
        cpu = server.cpu_seconds() - cpu0
        recorder.wait(60)
    finally:
        servers.stop()
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, n = line.rsplit(" ", 1)
        counts[bucket_of(stack.split(";"))] += int(n)
    total = sum(counts.values())
    per_request_us = cpu / max(result.requests, 1) * 1e6
    print(
        f"{args.config} server, {args.model} model, {args.batch} row(s)/request, "
        f"{args.connections} connections: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
        f"p99 {result.p99_ms:.2f} ms; server CPU {per_request_us:,.0f} us/request"
    )
    print("| bucket | share of samples | ~us per request |")
    print("|---|---|---|")
    for name, n in counts.most_common():
        print(f"| {name} | {n / total:.1%} | {per_request_us * n / total:,.0f} |")


if __name__ == "__main__":
    main()
