"""Command line of the analytics job: ``python -m analytics run`` (the live loop)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from pydantic import ValidationError

from analytics.cluster import dask_client
from analytics.driver import Driver
from analytics.settings import AnalyticsSettings
from ingest import DriftlakeError

FLAGS = {
    "warehouse": str,
    "model_name": str,
    "reference_path": str,
    "window_size": int,
    "alpha": float,
    "correction": str,
    "interval": float,
    "max_lateness": float,
    "scheduler": str,
    "n_workers": int,
    "pushgateway": str,
    "max_windows_per_cycle": int,
}


def parse_settings(argv: list[str] | None) -> tuple[str, AnalyticsSettings]:
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
    for cmd in (run,):
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
    command = "once" if args.once else "drain" if args.drain else args.command
    return command, settings


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    command, settings = parse_settings(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        with dask_client(settings) as client:
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
