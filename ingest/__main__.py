"""``python -m ingest``: the maintenance CLI of :mod:`ingest.maintain` (compact, retain)."""

from ingest.maintain.__main__ import main

if __name__ == "__main__":
    raise SystemExit(main())
