"""Capture: the transport from a request's rows to a landing file.

Two writers satisfy :class:`LandingSink`: :class:`LandingWriter` flushes from a thread of the
server process; :class:`ProcessLandingWriter` copies rows into a shared-memory ring
(``_spool``) that a flusher process (``_flusher``) turns into landing files, off the
server's interpreter. Neither imports Polars nor the readers (an import-linter contract).
"""

from __future__ import annotations

from ingest.capture.process_writer import ProcessLandingWriter, process_writer_supported
from ingest.capture.sink import LandingSink, WriterStats
from ingest.capture.thread_writer import CODECS, LandingWriter

__all__ = [
    "CODECS",
    "LandingSink",
    "LandingWriter",
    "ProcessLandingWriter",
    "WriterStats",
    "process_writer_supported",
]
