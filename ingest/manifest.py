"""Which files of a landing partition are visible: compaction groups and what they supersede.

A compaction writes one *group* of files ``compacted-<group>-<part>of<parts>.parquet`` per
hour. Every part's Parquet key-value metadata ``driftlake.compaction`` names the files the
group replaces. A group counts only once all its parts are published; from then on, the files
it supersedes are invisible to every project reader, even before compaction deletes them.
So a reader sees the hour's rows either from the old files or from the group, never both.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from ingest import paths
from ingest.errors import CorruptFileError, FileVanishedError, LandingError
from ingest.storage import StoredFile, Warehouse

META_KEY = b"driftlake.compaction"
_CACHE_LIMIT = 100_000
_cache: dict[tuple[str, int], frozenset[str]] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class PartitionView:
    """One landing partition resolved: the files to read, and the files nobody should read.

    ``visible`` are the writers' files not yet compacted plus complete compaction groups;
    ``superseded`` are files a complete group replaces; ``incomplete`` are parts of groups
    not (or not yet) fully published.
    """

    partition: str
    visible: tuple[StoredFile, ...]
    superseded: tuple[StoredFile, ...]
    incomplete: tuple[StoredFile, ...]
    groups: tuple[str, ...]

    @property
    def uncompacted(self) -> tuple[StoredFile, ...]:
        """Visible files that are a writer's small files (not part of a compaction group)."""
        return tuple(f for f in self.visible if paths.is_landing_name(_name(f)))


def _name(f: StoredFile) -> str:
    return f.path.rsplit("/", 1)[1]


def group_metadata(supersedes: Iterable[str], group: str, parts: int) -> dict[bytes, bytes]:
    """Return the Parquet key-value metadata recording what a compaction group replaces."""
    body = {"group": group, "parts": parts, "supersedes": sorted(supersedes)}
    return {META_KEY: json.dumps(body).encode()}


def read_supersedes(warehouse: Warehouse, f: StoredFile) -> frozenset[str]:
    """Return the names a compacted file's group supersedes (footer read once, then cached).

    Raises
    ------
    FileVanishedError
        If the file is gone (a later compaction or retention removed it).
    CorruptFileError
        If the footer cannot be read or holds no compaction record.
    """
    key = (f.path, f.size)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    try:
        meta = pq.read_schema(warehouse.uri(f.path)).metadata or {}
    except FileNotFoundError as exc:
        raise FileVanishedError(f.path) from exc
    except (OSError, pa.ArrowException) as exc:
        raise CorruptFileError(f.path, str(exc)) from exc
    if META_KEY not in meta:
        raise CorruptFileError(f.path, "compacted file without a driftlake.compaction record")
    names = frozenset(json.loads(meta[META_KEY])["supersedes"])
    with _cache_lock:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        _cache[key] = names
    return names


def resolve(
    partition: str,
    files: Iterable[StoredFile],
    supersedes: Callable[[StoredFile], frozenset[str]],
) -> PartitionView:
    """Split one partition's listing into visible, superseded and incomplete files.

    Pure given ``supersedes`` (the record of a group's first part). Should two complete
    groups claim the same file (only after a stale compaction lock was broken), the group
    with the smaller id wins and the other is ignored, so no row is ever visible twice.
    """
    files = sorted(files, key=lambda f: f.path)
    writers = [f for f in files if paths.is_landing_name(_name(f))]
    parts: dict[str, list[tuple[paths.CompactedName, StoredFile]]] = {}
    for f in files:
        parsed = paths.parse_compacted_name(_name(f))
        if parsed is not None:
            parts.setdefault(parsed.group, []).append((parsed, f))
    complete = {
        g: [f for _, f in members]
        for g, members in parts.items()
        if len({p.part for p, _ in members}) == members[0][0].parts
    }
    claims = {g: supersedes(members[0]) for g, members in complete.items()}
    active = sorted(complete)
    while True:
        hidden = set().union(*(claims[g] for g in active)) if active else set()
        top = [g for g in active if not any(_name(f) in hidden for f in complete[g])]
        conflict = next(
            (b for i, a in enumerate(top) for b in top[i + 1 :] if claims[a] & claims[b]), None
        )
        if conflict is None:
            break
        active.remove(conflict)
    top_files = [f for g in top for f in complete[g]]
    visible = [f for f in writers if _name(f) not in hidden] + top_files
    incomplete = [f for g, m in parts.items() if g not in active for _, f in m]
    keep = {f.path for f in top_files} | {f.path for f in incomplete}
    superseded = [f for f in files if _name(f) in hidden and f.path not in keep]
    return PartitionView(
        partition=partition,
        visible=tuple(sorted(visible, key=lambda f: f.path)),
        superseded=tuple(superseded),
        incomplete=tuple(incomplete),
        groups=tuple(sorted(top)),
    )


def view_partition(warehouse: Warehouse, partition: str, attempts: int = 20) -> PartitionView:
    """List and resolve one landing partition, consistently even while compaction runs.

    A directory listing is not a snapshot: one taken while a compaction publishes its group
    and deletes the old files could hold neither all old files nor the group. The partition is
    listed until two listings in a row resolve to the same visible files.

    Raises
    ------
    LandingError
        If the partition keeps changing for ``attempts`` listings.
    """
    previous: PartitionView | None = None
    for _ in range(attempts):
        try:
            files = warehouse.list_files(partition)
            view = resolve(partition, files, lambda f: read_supersedes(warehouse, f))
        except FileVanishedError:
            previous = None
            continue
        if previous is not None and previous.visible == view.visible:
            return view
        previous = view
    raise LandingError(
        f"landing partition {partition} changed on each of {attempts} listings; "
        "is a compaction running in a loop? Retry later"
    )
