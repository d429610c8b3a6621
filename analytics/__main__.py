"""Command line of the analytics job: ``run`` (the live loop) and ``backfill``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from datetime import UTC, datetime

from pydantic import ValidationError

from analytics.backfill import backfill
from analytics.cluster import dask_client
from analytics.detect import DetectConfig
from analytics.driver import Driver
from analytics.profile import load_profile
from analytics.settings import AnalyticsSettings
from ingest import DriftlakeError, Warehouse

FLAGS = {
    "warehouse": str,
    "model_name": str,
    "reference_path": str,
    "window_size": int,
    "window_seconds": float,
    "alpha": float,
    "correction": str,
    "interval": float,
    "max_lateness": float,
    "scheduler": str,
    "n_workers": int,
    "pushgateway": str,
    "max_windows_per_cycle": int,
}


def _utc(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO time such as 2026-11-25T12:00, got {text!r}"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_settings(argv: list[str] | None) -> tuple[argparse.Namespace, AnalyticsSettings]:
    parser = argparse.ArgumentParser(
        prog="python -m analytics",
        description="driftlake's drift job. Every flag overrides its DRIFTLAKE_* variable.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="test new windows every --interval seconds, forever")
    run.add_argument("--once", action="store_true", help="run one cycle and exit")
    run.add_argument(
        "--drain", action="store_true", help="run cycles until no window closes, then exit"
    )
    back = sub.add_parser(
        "backfill",
        help="recompute the drift history of a time range into backfill/<name>/",
    )
    back.add_argument("--start", type=_utc, default=None, help="ISO time, inclusive (UTC)")
    back.add_argument("--end", type=_utc, default=None, help="ISO time, exclusive (UTC)")
    back.add_argument("--name", default=None, help="backfill name (default: a timestamp)")
    for cmd in (run, back):
        for name, kind in FLAGS.items():
            cmd.add_argument("--" + name.replace("_", "-"), type=kind, default=None)
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k in FLAGS and v is not None}
    try:
        settings = AnalyticsSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        parser.exit(2, f"python -m analytics: invalid settings: {problems}\n")
    if args.command == "run":
        args.command = "once" if args.once else "drain" if args.drain else "run"
    return args, settings


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args, settings = parse_settings(argv)
    command = args.command
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        with dask_client(settings) as client:
            if command == "backfill":
                # no Driver here: its start-up rolls back uncommitted live history
                warehouse = Warehouse(settings.warehouse)
                name = args.name or datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
                report = backfill(
                    client,
                    warehouse,
                    load_profile(settings),
                    DetectConfig.from_settings(settings),
                    window_size=settings.window_size,
                    name=name,
                    start=args.start,
                    end=args.end,
                )
                print(
                    f"backfill {name}: {report.windows} windows ({report.drifted_windows} "
                    f"with drift) over {report.rows} rows in {report.seconds:.1f}s -> "
                    f"{warehouse.uri(report.root)}"
                )
                return 0
            driver = Driver(settings, client)
            if command == "once":
                driver.run_cycle()
            elif command == "drain":
                while driver.run_cycle().windows and not stop.is_set():
                    pass
            else:
                driver.run_forever(stop)
    except DriftlakeError as exc:
        print(f"python -m analytics: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
