"""Benchmark: instructions per request with capture off and on, counted by callgrind.

Run with ``uv run python -m bench.instructions [--requests 1000] [--batch 1] [--rounds 2]``
(needs Debian's ``valgrind``). Wall-clock figures on a shared machine move by tens of
percent between rounds; an instruction count does not: it is the same for the same binary,
inputs and environment whatever else the machine runs. So this is the noise-free measure of
what capture adds to a request's work, the part of it that the clock cannot resolve.

For ``off`` (``python -m serving --no-capture``) and ``on`` (``python -m serving``), each
round starts the server under ``valgrind --tool=callgrind --instr-atstart=no
--trace-children=yes`` (so its flusher process is counted too), warms it up uncounted,
turns counting on (``callgrind_control -i on``) for the server and its flusher, sends
``--requests`` requests of ``--batch`` held-out rows one after another from this process,
then turns the server's counting off, waits until the flusher has published every row
(that flush is counted), turns its counting off and stops both with SIGTERM. Reported:
instructions per request of the server and of the flusher, and on against off. Not
counted: cache misses and other time an instruction takes (the ring's writes touch fresh
memory). The flusher's figure overstates it: it looks at the ring by the clock (about
once a second), and under valgrind a second holds ~50 times fewer requests than natively,
so its fixed cost per look is spread over fewer of them. The server's figure is the
request path, which is what competes with requests for the server's core.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench import procs
from bench.serving import bodies
from harness import REFERENCE

TOTALS = re.compile(rb"^totals: (\d+)", re.MULTILINE)


def instrument(pid: int, state: str) -> None:
    """Turn callgrind's counting ``on`` or ``off`` in process ``pid``."""
    subprocess.run(
        ["callgrind_control", "-i", state, str(pid)], check=True, stdout=subprocess.DEVNULL
    )


def counted(out_dir: Path, pid: int) -> int:
    """Instructions callgrind counted for process ``pid`` (0 if it wrote no profile)."""
    path = out_dir / f"callgrind.{pid}"
    if not path.exists():
        return 0
    return sum(int(m) for m in TOTALS.findall(path.read_bytes()))


def published(server: procs.Proc, config: str, timeout: float = 900.0) -> None:
    """Wait until the server's flusher has published every row captured so far."""
    if config == "off":
        return
    deadline = time.monotonic() + timeout
    while True:
        m = procs.metrics(server)
        if m["driftlake_capture_flushed_rows_total"] >= m["driftlake_capture_rows_total"] > 0:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the flusher did not publish within {timeout:g} s: {m}")
        time.sleep(0.5)


def one_round(config: str, args: argparse.Namespace, work: Path) -> tuple[float, float]:
    """Instructions per request of the server and of its flusher, in one run."""
    out_dir = work / f"{config}-{time.monotonic_ns()}"
    out_dir.mkdir()
    valgrind = (
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--trace-children=yes",
        f"--callgrind-out-file={out_dir}/callgrind.%p",
    )
    flags = ["--no-capture"] if config == "off" else []
    argv = ["-m", "serving", "--warehouse", str(out_dir / "warehouse")]
    argv += ["--reference", str(REFERENCE), *flags]
    # under valgrind the imports alone take a minute or more
    server = procs.start(config, argv, out_dir, wrapper=valgrind, timeout=900)
    url = server.url + "/get-prediction"
    headers = {"content-type": "application/json"}
    payloads = bodies(args.batch)
    try:
        with httpx.Client(timeout=120, trust_env=False) as client:
            for i in range(200):  # warm-up, uncounted: first calls allocate lazily
                client.post(url, content=payloads[i % len(payloads)], headers=headers)
            published(server, config)  # the warm-up rows, uncounted
            pids = [server.proc.pid, *procs.descendants(server.proc.pid)]
            for pid in pids:
                instrument(pid, "on")
            for i in range(args.requests):
                r = client.post(url, content=payloads[i % len(payloads)], headers=headers)
                r.raise_for_status()
            instrument(server.proc.pid, "off")
            published(server, config)  # the counted rows' flush is counted, the exit not
            for pid in pids[1:]:
                instrument(pid, "off")
    finally:
        server.stop(timeout=600)
    own = counted(out_dir, server.proc.pid)
    flusher = sum(counted(out_dir, pid) for pid in pids[1:])
    shutil.rmtree(out_dir / "warehouse", ignore_errors=True)
    return own / args.requests, flusher / args.requests


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="counted requests per run")
    parser.add_argument("--batch", type=int, default=1, help="rows per request")
    parser.add_argument("--rounds", type=int, default=2, help="runs per configuration")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    work = Path(tempfile.mkdtemp(prefix="driftlake-bench-instructions-"))
    results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    for rnd in range(args.rounds):
        for config in ("off", "on") if rnd % 2 == 0 else ("on", "off"):
            server, flusher = one_round(config, args, work)
            results[config].append((server, flusher))
            print(
                f"  {config:>3} round {rnd}: server {server:,.0f} + flusher "
                f"{flusher:,.0f} instructions/request",
                flush=True,
            )
    off = statistics.median(s for s, _ in results["off"])
    on_server = statistics.median(s for s, _ in results["on"])
    on_flusher = statistics.median(p for _, p in results["on"])
    print(
        f"\n{args.batch} row(s)/request, {args.requests} requests per run, medians of "
        f"{args.rounds} runs: instructions per request"
    )
    print("| config | server | flusher | total | against off |")
    print("|---|---|---|---|---|")
    print(f"| off | {off:,.0f} | - | {off:,.0f} | 1.000 |")
    total = on_server + on_flusher
    print(
        f"| on | {on_server:,.0f} | {on_flusher:,.0f} | {total:,.0f} | {total / off:.3f} "
        f"(server {on_server / off:.3f}) |"
    )


if __name__ == "__main__":
    main()
