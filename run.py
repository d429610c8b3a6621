"""Stream simulated traffic at a driftlake gateway, or run the whole pipeline embedded.

    uv run run.py --drift true              # drifted stream (detected)
    uv run run.py --drift false             # held-out rows, no drift (no alarm)
    uv run run.py --dataset churn           # mixed numeric and categorical inputs, whose
                                            # device and country mix moves (chi-squared)

If nothing answers at ``--url`` (default http://localhost:8002, the compose gateway), the
pipeline is started in this process tree: one model server on a free loopback port, a local
Dask cluster, and the analytics loop, writing under ``./warehouse/runs/<time>/``.
"""

from __future__ import annotations

import argparse
import logging
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import polars as pl
from distributed import Client
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from analytics import AnalyticsSettings, CycleReport, Driver, dask_client, read_history
from ingest import ConfigError, Warehouse
from serving import churn
from serving.dataset import DemoStream

ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Dataset:
    """A demo data set: the reference the pipeline serves and tests, and the rows streamed."""

    reference: Path
    model: str
    label: str
    stream: Callable[[bool, int, int], DemoStream | churn.ChurnStream]
    """``stream(drift, drift_start, seed)``: the held-out rows, shifted from the start."""


DATASETS = {
    # 30 numeric features; drift moves four of them by one standard deviation
    "breast-cancer": Dataset(ROOT / "reference.parquet", "breast_cancer", "target", DemoStream),
    # 4 numeric and 4 categorical features; drift moves the device and country mix
    "churn": Dataset(ROOT / churn.REFERENCE_FILE, churn.MODEL, churn.LABEL, churn.ChurnStream),
}


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"true", "1", "yes", "on"}:
        return True
    if value in {"false", "0", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_dashboard(text: str) -> str | None:
    """Return a ``HOST:PORT`` dashboard address, or None for ``off``/``none``/``false``."""
    value = text.strip()
    if value.lower() in {"off", "none", "false", "no"}:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT (e.g. 127.0.0.1:8787, port 0 = any free one) or off, got {text!r}"
        )
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="run.py", description="Stream rows at a driftlake gateway (or an embedded one)."
    )
    p.add_argument("--drift", type=parse_bool, default=True, help="true|false (default true)")
    p.add_argument(
        "--dataset",
        choices=sorted(DATASETS),
        default="breast-cancer",
        help="demo data: breast-cancer (30 numeric features, default) or churn (numeric and "
        "categorical features; drift moves the device and country mix)",
    )
    p.add_argument("--url", default="http://localhost:8002", help="gateway to stream to")
    p.add_argument("--rate", type=float, default=100.0, help="requests per second (0 = max)")
    p.add_argument("--requests", type=int, default=2000, help="requests to send")
    p.add_argument("--duration", type=float, default=None, help="seconds to stream instead")
    p.add_argument("--batch", type=int, default=1, help="rows per request")
    p.add_argument("--seed", type=int, default=0, help="random seed of the stream")
    p.add_argument(
        "--drift-start", type=float, default=0.25, help="share of the stream before drift"
    )
    p.add_argument("--window-size", type=int, default=200, help="embedded: rows per window")
    p.add_argument(
        "--warehouse",
        default=None,
        help="embedded: warehouse root, a path or s3://bucket/prefix (AWS_* from the "
        "environment); default warehouse/runs/<time>/",
    )
    p.add_argument(
        "--dask-dashboard",
        type=parse_dashboard,
        default="127.0.0.1:0",
        metavar="HOST:PORT|off",
        help="embedded: Dask dashboard address (default a free loopback port; off disables it)",
    )
    p.add_argument(
        "--embedded", action="store_true", help="start the embedded pipeline even if --url answers"
    )
    args = p.parse_args(argv)
    if args.requests <= 0 or args.batch <= 0 or args.rate < 0 or args.window_size < 2:
        p.error("--requests and --batch must be positive, --rate >= 0, --window-size >= 2")
    if not 0 <= args.drift_start <= 1:
        p.error("--drift-start must be between 0 and 1")
    return args


def url_answers(url: str) -> bool:
    try:
        httpx.get(url.rstrip("/") + "/healthz", timeout=1.0)
    except httpx.TransportError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def model_server(warehouse: str, run_dir: Path, port: int, flush_interval: float, dataset: Dataset):
    """Run ``python -m serving`` for ``dataset`` on a loopback port until the block ends
    (SIGTERM flushes)."""
    log = open(run_dir / "model-server.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "serving",
            "--host", "127.0.0.1",
            "--port", str(port),
            "--warehouse", warehouse,
            "--reference", str(dataset.reference),
            "--model-name", dataset.model,
            "--label", dataset.label,
            "--replica", "embedded-0",
            "--flush-interval", str(flush_interval),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not url_answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"run.py: the embedded model server did not start; see {log.name}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextmanager
def start_cluster(settings: AnalyticsSettings) -> Iterator[Client]:
    """Enter :func:`dask_client`, turning an unbindable dashboard address into a CLI message."""
    # A taken dashboard port is not an error: distributed serves on a free one instead and
    # warns; dashboard_line says so in one line rather than a raw warning.
    warnings.filterwarnings("ignore", message=r"Port \d+ is already in use", category=UserWarning)
    with ExitStack() as stack:
        try:
            client = stack.enter_context(dask_client(settings))
        except RuntimeError as exc:
            if settings.dashboard_address and isinstance(exc.__cause__, OSError):
                raise SystemExit(
                    f"run.py: the local Dask cluster did not start ({exc.__cause__}); expected "
                    "--dask-dashboard to be an address of this host (e.g. 127.0.0.1:8787) "
                    f"or off, got {settings.dashboard_address!r}"
                ) from None
            raise
        yield client


def dashboard_line(settings: AnalyticsSettings, client: Client) -> str:
    """Say where the dashboard is, and that it moved if the requested port was taken."""
    link = client.dashboard_link
    wanted = int(settings.dashboard_address.rpartition(":")[2])
    served = client.scheduler_info()["services"]["dashboard"]
    if wanted and served != wanted:
        return f"{link}  ({settings.dashboard_address} is in use; served here instead)"
    return f"{link}  (while the demo runs)"


@dataclass
class LiveState:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    windows: int = 0
    drifted_windows: int = 0
    last_window: str = "-"
    features_drifting: int = 0
    min_p: float = float("nan")
    flagged: Counter = field(default_factory=Counter)
    first_drift_window: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def table(self, embedded: bool) -> Table:
        t = Table(title="driftlake stream", show_header=False)
        t.add_row("requests sent / ok / failed", f"{self.sent} / {self.ok} / {self.failed}")
        if embedded:
            t.add_row("windows tested / with drift", f"{self.windows} / {self.drifted_windows}")
            t.add_row("last window", self.last_window)
            t.add_row("features drifting (last)", str(self.features_drifting))
            t.add_row("smallest p-value (last)", f"{self.min_p:.3g}")
        return t

    def record(self, report: CycleReport, console: Console) -> None:
        """Count an analytics cycle's windows and print one line per window."""
        for r in report.windows:
            with self.lock:
                self.windows += 1
                self.drifted_windows += r.dataset_drift
                self.features_drifting = r.features_drifting
                self.min_p = r.min_p_value
                self.flagged.update(r.drifted_features)
                end = datetime.fromtimestamp(r.spec.end_us / 1e6, tz=UTC)
                self.last_window = f"#{r.spec.window_id} ending {end:%H:%M:%S}"
                if r.dataset_drift and self.first_drift_window is None:
                    self.first_drift_window = r.spec.window_id
            verdict = "[bold red]DRIFT[/]" if r.dataset_drift else "[green]ok[/]"
            names = escape(", ".join(r.drifted_features) or "-")
            console.print(
                f"window {r.spec.window_id:>4}: {verdict} rows={r.spec.rows} "
                f"features_drifting={r.features_drifting} "
                f"min_p={r.min_p_value:.3g} drifted=\\[{names}]"
            )


def start_embedded(
    stack: ExitStack, args: argparse.Namespace, console: Console, state: LiveState
) -> tuple[str, Driver]:
    """Start a model server, a local Dask cluster and the analytics loop; return URL and driver.

    They stop when ``stack`` closes: the loop first, then the cluster, then the server.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = ROOT / "warehouse" / "runs" / stamp  # logs; the warehouse too unless given
    run_dir.mkdir(parents=True, exist_ok=True)
    wh = Warehouse(args.warehouse or run_dir)  # an s3:// warehouse is checked here
    port = free_port()
    console.print(
        f"driftlake: nothing answers at {args.url}; starting the embedded pipeline "
        f"(model server 127.0.0.1:{port}, local Dask cluster, warehouse {wh.uri('')}, "
        f"logs {run_dir})"
    )
    logging.basicConfig(
        filename=run_dir / "analytics.log",
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    dataset = DATASETS[args.dataset]
    url = stack.enter_context(model_server(wh.url, run_dir, port, 0.5, dataset))
    settings = AnalyticsSettings(
        warehouse=wh.url,
        reference_path=str(dataset.reference),
        model_name=dataset.model,
        label=dataset.label,
        window_size=args.window_size,
        interval=1.0,
        n_workers=2,
        dashboard_address=args.dask_dashboard,
    )
    client = stack.enter_context(start_cluster(settings))
    if settings.dashboard_address:
        console.print(f"Dask dashboard: {dashboard_line(settings, client)}")
    driver = Driver(settings, client)
    stop = threading.Event()
    loop = threading.Thread(
        target=driver.run_forever,
        args=(stop,),
        kwargs={"on_cycle": lambda report: state.record(report, console)},
    )
    loop.start()
    stack.callback(loop.join)
    stack.callback(stop.set)
    return url, driver


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    embedded = args.embedded or not url_answers(args.url)
    total = args.requests
    state = LiveState()
    with ExitStack() as stack:
        driver = None
        if embedded:
            try:
                url, driver = start_embedded(stack, args, console, state)
            except ConfigError as exc:
                console.print(f"run.py: {exc}")
                return 2
        else:
            url = args.url.rstrip("/")
            console.print(
                f"driftlake: streaming to {url} "
                f"(dataset={args.dataset}, drift={str(args.drift).lower()})"
            )

        dataset = DATASETS[args.dataset]
        stream = dataset.stream(args.drift, int(total * args.batch * args.drift_start), args.seed)
        with (
            httpx.Client(base_url=url, timeout=10.0) as http,
            Live(state.table(embedded), console=console, refresh_per_second=4) as live,
        ):
            started = time.monotonic()
            i = 0
            while True:
                elapsed = time.monotonic() - started
                if args.duration is not None:
                    if elapsed >= args.duration:
                        break
                elif i >= total:
                    break
                if args.rate > 0:
                    delay = started + i / args.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                rows = stream.next_rows(args.batch)
                data = rows if isinstance(rows, list) else rows.tolist()
                body = orjson.dumps({"features": {"columns": stream.columns, "data": data}})
                try:
                    resp = http.post(
                        "/get-prediction",
                        content=body,
                        headers={"content-type": "application/json"},
                    )
                    ok = resp.status_code == 200
                except httpx.TransportError:
                    ok = False
                state.sent += 1
                state.ok += ok
                state.failed += not ok
                i += 1
                if i % 20 == 0:
                    live.update(state.table(embedded))
            accepted_rows = state.ok * args.batch
            if driver is not None:
                # Wait until every full window of what was accepted has been tested.
                expected = accepted_rows // args.window_size * args.window_size
                deadline = time.monotonic() + 60
                while (
                    driver.checkpoint.rows_tested_total < expected and time.monotonic() < deadline
                ):
                    live.update(state.table(embedded))
                    time.sleep(0.2)
            live.update(state.table(embedded))

        summarize(console, args, state, driver, accepted_rows)
    return 0 if state.failed == 0 else 1


def summarize(console: Console, args, state: LiveState, driver: Driver | None, rows: int) -> None:
    console.print()
    console.print(
        f"[bold]summary[/]: {state.ok} requests accepted ({rows} rows), {state.failed} failed"
    )
    if driver is None:
        console.print("drift results: see Grafana (http://localhost:4000) and Prometheus")
        return
    history = read_history(driver.warehouse, driver.model)
    windows = history.group_by("window_id").agg(pl.col("dataset_drift").first())
    drifted = int(windows["dataset_drift"].sum()) if windows.height else 0
    console.print(
        f"windows tested: {windows.height} of {args.window_size} rows; "
        f"with dataset drift: {drifted}"
    )
    flagged = (
        history.filter(pl.col("drifted"))
        .group_by("feature")
        .agg(pl.len().alias("windows"))
        .sort("windows", "feature", descending=[True, False])
    )
    if flagged.height:
        names = ", ".join(f"{f} ({n})" for f, n in flagged.iter_rows())
        console.print(f"drifted features (windows flagged): {names}")
    else:
        console.print("drifted features: none")
    if state.first_drift_window is not None and args.drift:
        console.print(f"first window with drift: #{state.first_drift_window}")
    where = driver.warehouse.uri("drift")
    options = "" if driver.warehouse.is_local else ", storage_options=<docs/s3.md>"
    console.print(f"history: {where}  (pl.scan_parquet('{where}/**/*.parquet'{options}))")


if __name__ == "__main__":
    raise SystemExit(main())
