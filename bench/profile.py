"""Where a model server's time goes under load: py-spy samples grouped into a few buckets.

Run with ``uv run --with py-spy python -m bench.profile --config on --model default
--batch 1 --connections 8`` (py-spy is not a project dependency; ``--with`` brings it for
the run). Starts one server of the serving benchmark (``off``, ``on``, ``fwd`` or ``bare``),
warms it up, then drives it with wrk for ``--duration`` seconds while py-spy samples every
thread (``--nonblocking``: the server is never paused). Each main-thread sample is put in
the bucket of the innermost frame that names one (model, JSON parsing and validation,
capture, HTTP client, metrics, server and framework, event loop), which splits the main
thread's CPU time (from /proc); the other threads' (the landing writer's) CPU time is read
from /proc directly. The table shows each part's share and its CPU time per request.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench import procs, wrk
from bench.serving import bodies, start_servers, train_forest

# (bucket, substrings of a frame), tried from the innermost frame outwards
BUCKETS = (
    ("model predict", ("serving/model.py", "sklearn/", "scipy/", "numpy/", "joblib/")),
    ("JSON parse + validation", ("serving/request.py", "pydantic", "bench/procs.py")),
    ("capture (request path)", ("serving/capture.py", "ingest/")),
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
        cpu0 = thread_cpu(server.proc.pid)
        result = wrk.run(url, script, args.connections, args.duration)
        cpu1 = thread_cpu(server.proc.pid)
        recorder.wait(60)
    finally:
        servers.stop()
    requests = max(result.requests, 1)
    main_us = (cpu1["main"] - cpu0["main"]) / requests * 1e6
    other_us = (cpu1["other"] - cpu0["other"]) / requests * 1e6
    # Samples of the main thread split its CPU time; the landing writer's (a thread, or the
    # flusher process) is read from /proc, since a thread's samples also count GIL waits.
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, n = line.rsplit(" ", 1)
        frames = stack.split(";")
        if "MainThread" in frames[0]:
            counts[bucket_of(frames)] += int(n)
    total = sum(counts.values())
    print(
        f"{args.config} server, {args.model} model, {args.batch} row(s)/request, "
        f"{args.connections} connections: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
        f"p99 {result.p99_ms:.2f} ms; server CPU {main_us + other_us:,.0f} us/request"
    )
    print("| where | share of the server's CPU | us per request |")
    print("|---|---|---|")
    whole = main_us + other_us
    for name, n in counts.most_common():
        us = main_us * n / total
        print(f"| main thread: {name} | {us / whole:.1%} | {us:,.0f} |")
    print(f"| landing writer (thread or flusher) | {other_us / whole:.1%} | {other_us:,.0f} |")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process's main thread, and of its other threads and child processes
    (the landing writer's thread, or its flusher process), from /proc."""
    out = {"main": 0.0, "other": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / procs.CLK_TCK
        out["main" if task.name == str(pid) else "other"] += seconds
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        child_cpu = thread_cpu(int(child))
        out["other"] += child_cpu["main"] + child_cpu["other"]
    return out


if __name__ == "__main__":
    main()
