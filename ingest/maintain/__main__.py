"""``python -m ingest``: landing-zone maintenance (``compact``, ``retain``) from the shell."""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import ExitStack

from pydantic import ValidationError

from ingest.errors import ConfigError, DriftlakeError
from ingest.maintain.compaction import compact
from ingest.maintain.retention import retain
from ingest.maintain.settings import MaintenanceSettings
from ingest.paths import LANDING, check_name
from ingest.settings_cli import add_settings_flags, describe_validation_error, settings_from_args
from ingest.storage import Warehouse

PROG = "python -m ingest"
LOG_FORMAT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"
log = logging.getLogger("driftlake.ingest.cli")
# the older short names of settings' flags, kept working beside --compact-grace etc.
ALIASES = {
    "compact_grace": ["--grace"],
    "compact_target_file_rows": ["--target-file-rows"],
    "compact_row_group_rows": ["--row-group-rows"],
    "compact_delete_after": ["--delete-after"],
}


def _model_name(value: str) -> str:
    try:
        return check_name("model", value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _landing_models(warehouse: Warehouse) -> list[str]:
    """Return the models of the landing zone; a directory that is not ``model=<name>`` with a
    usable name is not one (and is left alone, with a warning)."""
    models = []
    for d in warehouse.list_dirs(LANDING):
        name = d.removeprefix("model=")
        try:
            if name == d:
                raise ConfigError(f"landing/{d} is not a model=<name> directory")
            models.append(check_name("model", name))
        except ConfigError as exc:
            log.warning("event=landing_dir_skipped reason=%s", " ".join(str(exc).split()))
    return models


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line; settings not given come from ``DRIFTLAKE_*`` or defaults."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Maintain the landing zone. Each setting is a flag of `compact` and "
        "`retain` and a DRIFTLAKE_<NAME> variable (--compact-grace is DRIFTLAKE_COMPACT_GRACE); "
        "a flag given wins over the variable.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cmds = {
        "compact": sub.add_parser(
            "compact",
            help="rewrite each closed hour every reader is done with into few large files, "
            "then apply retention",
        ),
        "retain": sub.add_parser(
            "retain", help="delete compacted landing hours and drift history past their age"
        ),
    }
    cmds["compact"].add_argument(
        "--no-retain", action="store_true", help="compact only; do not apply retention"
    )
    for cmd in cmds.values():
        cmd.add_argument(
            "--model",
            action="append",
            type=_model_name,
            default=None,
            help="model to maintain (repeatable; default: every model in the landing zone)",
        )
        cmd.add_argument(
            "--force",
            action="store_true",
            help="ignore readers' progress marks; only for a warehouse no live analytics job "
            "reads (a live job would test a compacted hour's rows again)",
        )
        add_settings_flags(cmd, MaintenanceSettings, aliases=ALIASES)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run one maintenance pass and print one line per model; 2 on unusable settings."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        settings = settings_from_args(MaintenanceSettings, args)
        warehouse = Warehouse(settings.warehouse)
        policy, keep = settings.compaction_policy(), settings.retention_policy()
        models = args.model or _landing_models(warehouse)
        with ExitStack() as stack:
            client = None
            if args.command == "compact" and settings.scheduler:
                from distributed import Client  # only when asked: the CLI runs without Dask

                client = stack.enter_context(Client(settings.scheduler, timeout="30s"))
            for model in models:
                if args.command == "compact":
                    r = compact(warehouse, model, policy, force=args.force, client=client)
                    print(
                        f"compact {model}: {len(r.partitions)} hours, {r.rows} rows, "
                        f"{sum(p.files_before for p in r.partitions)} -> "
                        f"{sum(p.files_after for p in r.partitions)} files, "
                        f"{sum(p.deleted for p in r.partitions)} deleted"
                        + (f" (skipped: {r.skipped})" if r.skipped else "")
                    )
                if args.command == "retain" or not args.no_retain:
                    k = retain(warehouse, model, keep, force=args.force)
                    print(
                        f"retain {model}: {len(k.landing_hours_deleted)} landing hours and "
                        f"{len(k.history_days_deleted)} history days deleted, "
                        f"{len(k.waiting_for_compaction)} expired hours wait for compaction"
                        + (f" (skipped: {k.skipped})" if k.skipped else "")
                    )
    except ValidationError as exc:
        problems = describe_validation_error(exc)
        print(f"{PROG}: error: invalid settings: {problems}", file=sys.stderr)
        return 2
    except DriftlakeError as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
