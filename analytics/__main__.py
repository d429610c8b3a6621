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
from analytics.health import Health, default_max_age, serve_health
from analytics.profile import load_profile
from analytics.settings import AnalyticsSettings
from ingest import ConfigError, DriftlakeError, Warehouse
from ingest.paths import check_name
from ingest.settings_cli import add_settings_flags, describe_validation_error, settings_from_args


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
        description="driftlake's drift job. Each setting is a flag of `run` and `backfill` "
        "(see `run -h`) and a DRIFTLAKE_<NAME> variable; a flag given wins over the variable.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="test new windows every --interval seconds, forever")
    run.add_argument("--once", action="store_true", help="run one cycle and exit")
    run.add_argument(
        "--drain",
        action="store_true",
        help="run cycles until no window closes and no new file is left unread, then exit",
    )
    back = sub.add_parser(
        "backfill",
        help="recompute the drift history of a time range into backfill/<name>/",
    )
    back.add_argument("--start", type=_utc, default=None, help="ISO time, inclusive (UTC)")
    back.add_argument("--end", type=_utc, default=None, help="ISO time, exclusive (UTC)")
    back.add_argument("--name", default=None, help="backfill name (default: a timestamp)")
    for cmd in (run, back):
        add_settings_flags(cmd, AnalyticsSettings)
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(AnalyticsSettings, args)
    except ValidationError as exc:
        parser.exit(2, f"python -m analytics: invalid settings: {describe_validation_error(exc)}\n")
    if args.command == "backfill" and args.name is not None:
        try:
            check_name("backfill", args.name)
        except ConfigError as exc:
            parser.exit(2, f"python -m analytics: invalid settings: name: {exc}\n")
    try:  # before the cluster starts: a missing bucket or bad credentials end here
        Warehouse(settings.warehouse)
    except DriftlakeError as exc:
        parser.exit(2, f"python -m analytics: warehouse: {exc}\n")
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
    health = None
    if command == "run" and settings.health_address:
        health = Health(settings.health_max_age or default_max_age(settings.interval))
        host, _, port = settings.health_address.rpartition(":")
        try:
            server = serve_health(health, host, int(port))
        except OSError as exc:
            print(
                f"python -m analytics: cannot serve /healthz on {settings.health_address}: "
                f"{exc}; choose another --health-address (or none)",
                file=sys.stderr,
            )
            return 2
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
                    batch_rows=settings.batch_rows,
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
                while not stop.is_set():
                    report = driver.run_cycle()
                    if not (report.windows or report.backlog):
                        break
            elif health is None:
                driver.run_forever(stop)
            else:
                health.count_errors(lambda: driver.cycle_errors)
                driver.run_forever(stop, on_cycle=health.cycle_succeeded)
    except DriftlakeError as exc:
        print(f"python -m analytics: {exc}", file=sys.stderr)
        return 2
    finally:
        if health is not None:
            server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
