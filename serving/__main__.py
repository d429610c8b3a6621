"""``python -m serving``: run one model-server replica under uvicorn (one worker)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from ingest import DriftlakeError
from serving.app import create_app
from serving.settings import ServingSettings

PROG = "python -m serving"
LOG_FORMAT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"

# CLI flag -> ServingSettings field; a flag given wins over the DRIFTLAKE_* variable.
FLAGS = {
    "--model-name": ("model_name", str),
    "--reference": ("reference_path", Path),
    "--label": ("label", str),
    "--model-path": ("model_path", Path),
    "--model-version": ("model_version", str),
    "--warehouse": ("warehouse", str),
    "--replica": ("replica", str),
    "--flush-rows": ("flush_rows", int),
    "--flush-interval": ("flush_interval", float),
    "--max-buffer-rows": ("max_buffer_rows", int),
    "--landing-compression": ("landing_compression", str),
    "--spool-rows": ("spool_rows", int),
    "--max-batch-rows": ("max_batch_rows", int),
    "--event-loop": ("event_loop", str),
}


def _help(field: str) -> str:
    # argparse expands %-formats in help texts; a setting's description is plain prose
    return (ServingSettings.model_fields[field].description or "").replace("%", "%%")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line; settings not given come from ``DRIFTLAKE_*`` or defaults."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve a model over HTTP and capture every request into the landing zone. "
        "Each setting can also be given as DRIFTLAKE_<NAME> (e.g. DRIFTLAKE_WAREHOUSE).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    for flag, (field, kind) in FLAGS.items():
        parser.add_argument(flag, dest=field, type=kind, default=None, help=_help(field))
    for flag in ("capture", "capture_process"):
        parser.add_argument(
            "--" + flag.replace("_", "-"),
            action=argparse.BooleanOptionalAction,
            default=None,
            help=_help(flag),
        )
    parser.add_argument(
        "--graceful-timeout",
        type=float,
        default=10.0,
        help="seconds in-flight requests get on SIGTERM before the buffer is flushed (default: 10)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="default: info",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; returns 2 on unusable settings."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT)
    overrides = {
        field: getattr(args, field)
        for field in [f for f, _ in FLAGS.values()] + ["capture", "capture_process"]
        if getattr(args, field) is not None
    }
    try:
        settings = ServingSettings(**overrides)
        app = create_app(settings)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        return _fail(f"invalid settings: {problems}")
    except DriftlakeError as exc:
        return _fail(str(exc))
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown (lifespan done, buffer
    # published); ending then with status 0 tells a supervisor the stop was clean
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        workers=1,
        loop=settings.event_loop,
        lifespan="on",
        log_config=None,  # keep our key=value root handler for uvicorn's loggers too
        log_level=args.log_level.lower(),
        access_log=args.access_log,
        server_header=False,
        timeout_graceful_shutdown=args.graceful_timeout,
    )
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _fail(message: str) -> int:
    one_line = " ".join(message.split())
    print(f"{PROG}: error: {one_line}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
