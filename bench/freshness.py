"""Benchmark: seconds from the first drifted request to the drift flag being visible.

Run with ``uv run python -m bench.freshness [--runs 7] [--rate 100]`` (needs Debian's
``prometheus-pushgateway``). The embedded setup, all on loopback: one model server
(``python -m serving``), a local Dask cluster and the analytics ``Driver`` loop pushing to a
Pushgateway, with the serving and analytics defaults unless ``--flush-interval``,
``--interval`` or ``--window-size`` say otherwise. A load generator (a separate process)
sends one-row requests of held-out rows at ``--rate`` requests/s.

Each run: clean traffic until a window that began after the clean traffic resumed has been
pushed without drift, then a random pause of up to one window or one analytics cycle,
whichever is longer (so drift starts anywhere in both), then drifted traffic (run.py's
scenario: four features shifted by one reference standard deviation). ``t0`` is when the
first drifted request was sent. Measured:

- Pushgateway: first poll (every 50 ms) showing ``driftlake_dataset_drift 1`` for a window
  that ends at or after ``t0``;
- history: first poll showing a drifted window (ending at or after ``t0``) in
  ``drift/model=<m>/``.

Reported per run and as medians: those two delays, how long after ``t0`` the flagged window
ended (its event time: waiting for rows), and the rest (flush + watermark + cycle).
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import orjson
import pyarrow.parquet as pq
from prometheus_client.parser import text_string_to_metric_families

from analytics import AnalyticsSettings, Driver, dask_client
from bench import procs
from harness import REFERENCE, ROOT
from harness.prometheus import pushgateway_running
from ingest import Warehouse
from ingest.paths import drift_dir
from serving import ServingSettings
from serving.dataset import LABEL, split_breast_cancer

MODEL = "breast_cancer"
# run.py's default scenario: these features move by this many reference standard deviations
DRIFT_SHIFTS = {"mean radius": 1.0, "mean texture": 1.0, "worst area": 1.0, "mean concavity": 1.0}


# -- the load generator (its own process) ------------------------------------------------
def loadgen(url: str, rate: float, seed: int) -> None:
    """Send one-row requests at ``rate``/s; stdin lines ``clean``/``drift``/``stop`` steer it.

    Prints ``DRIFT <epoch seconds>`` when the first drifted request of a drift phase is sent.
    """
    reference, holdout = split_breast_cancer()
    columns = [c for c in holdout.columns if c != LABEL]
    rows = holdout.select(columns).to_numpy()
    std = reference.select(columns).std().row(0)
    shift = np.zeros(len(columns))
    for name, sigmas in DRIFT_SHIFTS.items():
        shift[columns.index(name)] = sigmas * std[columns.index(name)]
    state = {"mode": "clean", "announce": False}

    def read_commands() -> None:
        for line in sys.stdin:
            cmd = line.strip()
            if cmd in ("clean", "drift"):
                state["announce"] = cmd == "drift" and state["mode"] != "drift"
                state["mode"] = cmd
            elif cmd == "stop":
                state["mode"] = "stop"
                return

    threading.Thread(target=read_commands, daemon=True).start()
    rng = np.random.default_rng(seed)
    with httpx.Client(base_url=url, timeout=10.0, trust_env=False) as http:
        started = time.monotonic()
        i = 0
        while state["mode"] != "stop":
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            row = rows[rng.integers(len(rows))]
            drifted = state["mode"] == "drift"
            if drifted:
                row = row + shift
            body = orjson.dumps({"features": {"columns": columns, "data": [row.tolist()]}})
            sent = time.time()
            resp = http.post("/get-prediction", content=body)
            if drifted and state["announce"]:
                state["announce"] = False
                print(f"DRIFT {sent:.6f}", flush=True)
            if resp.status_code != 200:
                print(f"ERROR {resp.status_code} {resp.text[:200]}", flush=True)
            i += 1


# -- watching the outputs -----------------------------------------------------------------
def pushed_state(url: str) -> tuple[float | None, float | None]:
    """Return (dataset_drift, window_end seconds) of the model's group, or Nones."""
    text = httpx.get(f"{url}/metrics", timeout=5, trust_env=False).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("model") == MODEL and s.labels.get("job") == "driftlake_analytics":
                out[s.name] = s.value
    return out.get("driftlake_dataset_drift"), out.get("driftlake_window_end_timestamp_seconds")


class HistoryWatch:
    """Reads each new window file of the drift history once: (window_end, dataset_drift)."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse
        self.seen: dict[str, tuple[float, bool]] = {}

    def poll(self) -> list[tuple[float, bool]]:
        new = []
        for f in self.warehouse.list_files(drift_dir(MODEL)):
            if f.path in self.seen:
                continue
            t = pq.read_table(self.warehouse.uri(f.path), columns=["window_end", "dataset_drift"])
            end = t["window_end"][0].value / 1e6  # timestamp[us] -> epoch seconds
            self.seen[f.path] = (end, bool(t["dataset_drift"][0].as_py()))
            new.append(self.seen[f.path])
        return new


@dataclass
class Result:
    push_s: float
    history_s: float
    window_end_s: float  # flagged window's last row, after t0 (event time)


def one_run(gen: subprocess.Popen, pushgateway: str, watch: HistoryWatch, args) -> Result:
    # clean until a window that started after the switch has been pushed without drift
    gen.stdin.write("clean\n")
    gen.stdin.flush()
    clean_since = time.time()
    deadline = time.monotonic() + 120
    window_s = args.window_size / args.rate
    while True:
        watch.poll()
        drift, end = pushed_state(pushgateway)
        if drift == 0 and end is not None and end > clean_since + window_s:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("no clean window was pushed within 120 s")
        time.sleep(0.1)
    # drift starts anywhere within a window and within an analytics cycle
    time.sleep(random.uniform(0, max(window_s, args.interval)))
    gen.stdin.write("drift\n")
    gen.stdin.flush()
    line = gen.stdout.readline().split()
    if not line or line[0] != "DRIFT":
        raise RuntimeError(f"load generator said {line!r}")
    t0 = float(line[1])
    push_at = hist_at = None
    flagged_end = None
    deadline = time.monotonic() + 60
    while push_at is None or hist_at is None:
        now = time.time()
        if hist_at is None:
            hits = [end for end, drifted in watch.poll() if drifted and end >= t0]
            if hits:
                hist_at, flagged_end = now, min(hits)
        if push_at is None:
            drift, end = pushed_state(pushgateway)
            if drift == 1 and end is not None and end >= t0:
                push_at = now
        if time.monotonic() > deadline:
            raise RuntimeError("drift was not flagged within 60 s of its start")
        time.sleep(0.05)
    return Result(push_at - t0, hist_at - t0, flagged_end - t0)


def main(argv: list[str] | None = None) -> None:
    serving_defaults = ServingSettings(replica="bench")
    analytics_defaults = AnalyticsSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="drift onsets to time")
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s (one row each)")
    parser.add_argument("--flush-interval", type=float, default=serving_defaults.flush_interval)
    parser.add_argument("--interval", type=float, default=analytics_defaults.interval)
    parser.add_argument("--window-size", type=int, default=analytics_defaults.window_size)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loadgen", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.loadgen:
        loadgen(args.loadgen, args.rate, args.seed)
        return
    random.seed(args.seed)
    work = Path(tempfile.mkdtemp(prefix="driftlake-bench-freshness-"))
    wh = work / "warehouse"
    print(
        f"bench.freshness: FLUSH_INTERVAL={args.flush_interval:g} s, analytics "
        f"INTERVAL={args.interval:g} s, WINDOW_SIZE={args.window_size}, {args.rate:g} req/s "
        f"(one row each), {args.runs} runs; work dir {work}",
        flush=True,
    )
    stack = ExitStack()  # closed in the finally below: stops the Pushgateway
    pushgateway = stack.enter_context(pushgateway_running(work)).url
    server = procs.start(
        "server",
        ["-m", "serving", "--warehouse", str(wh), "--reference", str(REFERENCE),
         "--replica", "fresh-0", "--flush-interval", str(args.flush_interval)],
        work,
    )  # fmt: skip
    settings = AnalyticsSettings(
        warehouse=str(wh),
        reference_path=str(REFERENCE),
        window_size=args.window_size,
        interval=args.interval,
        pushgateway=pushgateway,
        dashboard_address=None,
    )
    stop = threading.Event()
    gen = subprocess.Popen(
        [sys.executable, "-m", "bench.freshness", "--loadgen", server.url, "--rate",
         str(args.rate), "--seed", str(args.seed)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    cycles: list[float] = []
    results: list[Result] = []
    try:
        with dask_client(settings) as client:
            driver = Driver(settings, client)
            loop = threading.Thread(
                target=driver.run_forever,
                args=(stop,),
                kwargs={"on_cycle": lambda r: cycles.append(r.seconds)},
                daemon=True,
            )
            loop.start()
            watch = HistoryWatch(Warehouse(str(wh)))
            for i in range(args.runs):
                r = one_run(gen, pushgateway, watch, args)
                results.append(r)
                print(
                    f"  run {i}: pushgateway {r.push_s:5.2f} s, history {r.history_s:5.2f} s "
                    f"(flagged window ended {r.window_end_s:+5.2f} s after t0)",
                    flush=True,
                )
            stop.set()
            loop.join(30)
    finally:
        stop.set()
        if gen.poll() is None:
            gen.stdin.write("stop\n")
            gen.stdin.flush()
            gen.wait(10)
        server.stop()
        stack.close()
    report(results, cycles, args)


def report(results: list[Result], cycles: list[float], args) -> None:
    def med(xs: list[float]) -> float:
        return statistics.median(xs)

    push = [r.push_s for r in results]
    hist = [r.history_s for r in results]
    fill = [r.window_end_s for r in results]
    rest = [r.history_s - r.window_end_s for r in results]
    bound = args.flush_interval + args.interval + 2
    print()
    print(
        f"FLUSH_INTERVAL {args.flush_interval:g} s, INTERVAL {args.interval:g} s, WINDOW_SIZE "
        f"{args.window_size}, {args.rate:g} req/s, {len(results)} runs"
    )
    print("| seconds after the first drifted request | median | min | max |")
    print("|---|---|---|---|")
    for name, xs in (
        ("drift flag in the Pushgateway", push),
        ("drifted window in the history", hist),
        ("flagged window's last row (event time)", fill),
        ("history minus window end (flush + watermark + cycle)", rest),
    ):
        print(f"| {name} | {med(xs):.2f} | {min(xs):.2f} | {max(xs):.2f} |")
    print(
        f"target: median <= FLUSH_INTERVAL + INTERVAL + 2 s = {bound:g} s "
        f"({'met' if med(push) <= bound and med(hist) <= bound else 'NOT met'}); "
        f"every alarm within 10 s: {'yes' if max(push + hist) <= 10 else 'no'}; "
        f"analytics cycle median {med(cycles):.2f} s over {len(cycles)} cycles"
    )


if __name__ == "__main__":
    main()
