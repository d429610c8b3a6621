"""Capture: the transport from a request's rows to a landing file.

Two writers satisfy :class:`LandingSink`: :class:`LandingWriter` flushes from a thread of the
server process; :class:`ProcessLandingWriter` copies rows into a shared-memory ring
(``_spool``) that a flusher process (``_flusher``) turns into landing files, off the
server's interpreter. Both take categorical columns and row ids as strings; a categorical
value or a row id may hold at most :data:`MAX_VALUE_BYTES` UTF-8 bytes. Neither imports
Polars nor the readers (an import-linter contract).
"""

from __future__ import annotations

from ingest.capture._text import MAX_VALUE_BYTES
from ingest.capture.process_writer import ProcessLandingWriter, process_writer_supported
from ingest.capture.sink import LandingSink, WriterStats
from ingest.capture.thread_writer import CODECS, LandingWriter

__all__ = [
    "CODECS",
    "MAX_VALUE_BYTES",
    "LandingSink",
    "LandingWriter",
    "ProcessLandingWriter",
    "WriterStats",
    "process_writer_supported",
]
