"""``python -m ingest``: landing-zone maintenance (``compact``, ``retain``) from the shell."""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import ExitStack

from pydantic import ValidationError

from ingest.compaction import compact
from ingest.errors import DriftlakeError
from ingest.retention import retain
from ingest.settings import MaintenanceSettings
from ingest.storage import Warehouse

PROG = "python -m ingest"
LOG_FORMAT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"
# flag -> MaintenanceSettings field; a flag given wins over its DRIFTLAKE_* variable
FLAGS = {
    "--warehouse": ("warehouse", str),
    "--grace": ("compact_grace", float),
    "--target-file-rows": ("compact_target_file_rows", int),
    "--row-group-rows": ("compact_row_group_rows", int),
    "--delete-after": ("compact_delete_after", float),
    "--landing-retention-days": ("landing_retention_days", str),
    "--history-retention-days": ("history_retention_days", str),
    "--scheduler": ("scheduler", str),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line; settings not given come from ``DRIFTLAKE_*`` or defaults."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Maintain the landing zone. Every flag overrides its DRIFTLAKE_<NAME> "
        "variable (e.g. --grace is DRIFTLAKE_COMPACT_GRACE).",
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
            default=None,
            help="model to maintain (repeatable; default: every model in the landing zone)",
        )
        cmd.add_argument(
            "--force",
            action="store_true",
            help="ignore readers' progress marks; only for a warehouse no live analytics job "
            "reads (a live job would test a compacted hour's rows again)",
        )
        for flag, (field, _) in FLAGS.items():
            doc = MaintenanceSettings.model_fields[field].description
            cmd.add_argument(
                flag,
                dest=field,
                default=None,
                metavar="X",
                help=f"{doc} [DRIFTLAKE_{field.upper()}]",
            )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run one maintenance pass and print one line per model; 2 on unusable settings."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    overrides = {f: getattr(args, f) for f, _ in FLAGS.values() if getattr(args, f) is not None}
    try:
        settings = MaintenanceSettings(**overrides)
        warehouse = Warehouse(settings.warehouse)
        policy, keep = settings.compaction_policy(), settings.retention_policy()
        models = args.model or [d.removeprefix("model=") for d in warehouse.list_dirs("landing")]
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
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        print(f"{PROG}: error: invalid settings: {problems}", file=sys.stderr)
        return 2
    except DriftlakeError as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
