"""One writer's landing files: a flush's buffered requests as one table, one file per UTC hour."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from ingest import paths
from ingest.capture._blocks import Block, to_batches
from ingest.errors import LandingError
from ingest.schema import MODEL_VERSION, REPLICA, TS, ModelSchema
from ingest.storage import Warehouse

# Codecs a landing file may use. "none" is the default: landing files live until compaction
# rewrites them with zstd, and zstd here would take the flush's CPU, on a busy server the
# request path's, to save a fifth of the bytes (bench.landing measures both).
CODECS = ("none", "zstd", "snappy", "lz4")


def check_codec(compression: str) -> None:
    """Raise ValueError unless ``compression`` is one of :data:`CODECS`."""
    if compression not in CODECS:
        raise ValueError(f"compression must be one of {CODECS}, not {compression!r}")


class LandingFiles:
    """Builds and publishes the landing files of one replica's writer.

    File names carry the replica and a sequence number that grows with every file, so they
    never collide. Dictionary encoding is used for the replica, model version and
    categorical columns only: on unique request ids and continuous numbers it costs CPU and
    saves nothing.
    """

    def __init__(
        self, warehouse: Warehouse, schema: ModelSchema, replica: str, compression: str
    ) -> None:
        check_codec(compression)
        self.warehouse = warehouse
        self.schema = schema
        self.arrow_schema = schema.arrow_schema()
        self.replica = replica
        self.compression = compression
        self._dictionary_columns = [REPLICA, MODEL_VERSION] + [
            f.name for f in schema.features if f.kind != "numeric"
        ]
        self._seq = 0

    def table(self, taken: list[tuple[float, pa.RecordBatch | Block]]) -> pa.Table:
        """The rows of buffered entries as one table, one chunk per column.

        Per-request batches are tiny and the Parquet writer's per-chunk overhead would
        otherwise dominate the flush.
        """
        batches = to_batches(taken, self.arrow_schema, self.replica)
        return pa.Table.from_batches(batches, self.arrow_schema).combine_chunks()

    def publish(self, table: pa.Table) -> tuple[pa.Table, Exception | None, int]:
        """Publish ``table`` one UTC hour per file.

        Returns the rows not published (empty on success), the error that stopped it (or
        None) and how many files were published.
        """
        bounds = pc.min_max(table[TS])
        first, last = _hour(bounds["min"].as_py()), _hour(bounds["max"].as_py())
        if first == last:  # nearly every flush: no per-row floor and unique
            hours, distinct = None, [first]
        else:
            hours = pc.floor_temporal(table[TS], unit="hour")
            distinct = pc.unique(hours).to_pylist()
        for i, hour in enumerate(distinct):
            part = table if hours is None else table.filter(pc.equal(hours, hour))
            self._seq += 1
            rel = f"{paths.partition_of(self.schema.model, hour)}/" + paths.landing_file_name(
                self.replica, self._seq
            )
            try:
                self.warehouse.publish_table(
                    part,
                    rel,
                    compression=self.compression,
                    compression_level=1 if self.compression == "zstd" else None,
                    use_dictionary=self._dictionary_columns,
                    # readers prune landing files by time only; compaction writes statistics
                    # for every column
                    write_statistics=[TS],
                    cache=False,  # the page cache is the server's memory (ingest.storage)
                )
            except (LandingError, OSError) as exc:
                if hours is None:
                    return table, exc, i
                rest = table.filter(pc.is_in(hours, pa.array(distinct[i:], hours.type)))
                return rest, exc, i
        return table.slice(0, 0), None, len(distinct)


def _hour(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)
