"""One writer's landing files: a flush's buffered requests as one table, one file per UTC hour."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from ingest import paths
from ingest.capture._blocks import Block, to_batches
from ingest.errors import LandingError, ObjectExistsError
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
        # (name, rows at the table's front, hour or None for all) of a publish that failed
        self._unsure: tuple[str, int, datetime | None] | None = None

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
        None) and how many files were published. The caller must pass the rows not
        published at the front of the next table: a failed upload may still have landed
        (its answer was lost), so its rows are retried under the same name, create-only,
        and an "already exists" means the first attempt landed. Rows are never published
        twice, under two names or under one.
        """
        files = 0
        if self._unsure is not None:
            rel, prefix_rows, hour = self._unsure
            prefix = table.slice(0, prefix_rows)
            mine = None if hour is None else pc.equal(_hours(prefix[TS]), hour)
            part = prefix if mine is None else prefix.filter(mine)
            try:
                self._put(part, rel)
            except ObjectExistsError:
                pass  # the earlier attempt landed
            except (LandingError, OSError) as exc:
                return table, exc, 0
            self._unsure = None
            files = 1
            rest = [] if mine is None else [prefix.filter(pc.invert(mine))]
            table = pa.concat_tables([*rest, table.slice(prefix_rows)])
            if table.num_rows == 0:
                return table, None, files
        bounds = pc.min_max(table[TS])
        first, last = _hour(bounds["min"].as_py()), _hour(bounds["max"].as_py())
        if first == last:  # nearly every flush: no per-row floor and unique
            hours, distinct = None, [first]
        else:
            hours = _hours(table[TS])
            distinct = pc.unique(hours).to_pylist()
        for i, hour in enumerate(distinct):
            part = table if hours is None else table.filter(pc.equal(hours, hour))
            self._seq += 1
            rel = f"{paths.partition_of(self.schema.model, hour)}/" + paths.landing_file_name(
                self.replica, self._seq
            )
            try:
                self._put(part, rel)
            except (LandingError, OSError) as exc:
                rest = (
                    table
                    if hours is None
                    else table.filter(pc.is_in(hours, pa.array(distinct[i:], hours.type)))
                )
                self._unsure = (rel, rest.num_rows, None if hours is None else hour)
                return rest, exc, files + i
        return table.slice(0, 0), None, files + len(distinct)

    def _put(self, part: pa.Table, rel: str) -> None:
        self.warehouse.publish_table(
            part,
            rel,
            exclusive=True,
            compression=self.compression,
            compression_level=1 if self.compression == "zstd" else None,
            use_dictionary=self._dictionary_columns,
            # readers prune landing files by time only; compaction writes statistics for
            # every column
            write_statistics=[TS],
            cache=False,  # the page cache is the server's memory (ingest._local_store)
        )


def _hours(ts: pa.ChunkedArray | pa.Array) -> pa.Array:
    return pc.floor_temporal(ts, unit="hour")


def _hour(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)
