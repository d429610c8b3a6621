"""``python -m serving``: run one model-server replica under uvicorn (one worker)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import uvicorn
from pydantic import ValidationError

from ingest import DriftlakeError
from ingest.settings_cli import add_settings_flags, describe_validation_error, settings_from_args
from serving.app import create_app
from serving.protocol import http_protocol
from serving.settings import ServingSettings

PROG = "python -m serving"
LOG_FORMAT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"

# older names of settings' flags, kept working beside the generated --reference-path
ALIASES = {"reference_path": ["--reference"]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line; settings not given come from ``DRIFTLAKE_*`` or defaults."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve a model over HTTP and capture every request into the landing zone. "
        "Each setting is a flag and a DRIFTLAKE_<NAME> variable (--flush-rows is "
        "DRIFTLAKE_FLUSH_ROWS); a flag given wins over the variable.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    add_settings_flags(parser, ServingSettings, aliases=ALIASES)
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
    try:
        settings = settings_from_args(ServingSettings, args)
        app = create_app(settings)
    except ValidationError as exc:
        return _fail(f"invalid settings: {describe_validation_error(exc)}")
    except DriftlakeError as exc:
        return _fail(str(exc))
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown (lifespan done, buffer
    # published); ending then with status 0 tells a supervisor the stop was clean
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    # uvicorn's httptools protocol has no bound on a request's header block: ours adds it
    http, http_options = http_protocol(
        settings.max_header_bytes, settings.read_timeout, app.state.service.metrics.refused
    )
    uvicorn.run(
        app,
        http=http,
        **http_options,
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
