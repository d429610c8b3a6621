"""Which files of a landing partition are visible: compaction groups and what they supersede.

A compaction writes one *group* of files ``compacted-<group>-<part>of<parts>.parquet`` per
hour. Every part's Parquet key-value metadata ``driftlake.compaction`` names the files the
group replaces (and those its source groups replaced). A group counts only once all its
parts are published; from then on, the files it supersedes are invisible to every project
reader, even before compaction deletes them.
So a reader sees the hour's rows either from the old files or from the group, never both.

Anything else in an hour partition is *rejected*, with the reason, and read by nobody: a file
whose name fits neither the writers' nor the compaction's pattern, a file in a subdirectory,
and a compacted part whose record cannot be read (truncated, or no ``driftlake.compaction``
record). A group with an unreadable part is not complete; its other parts are rejected too
if they hold the only copy of their rows. Whoever maintains the landing zone (the analytics
driver, compaction, retention) moves rejected files to quarantine.
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
class RejectedFile:
    """A file of a landing hour partition that no reader reads, and why (for quarantine)."""

    path: str
    reason: str


@dataclass(frozen=True)
class PartitionView:
    """One landing partition resolved: the files to read, and the files nobody should read.

    ``visible`` are the writers' files not yet compacted plus complete compaction groups;
    ``superseded`` are files a complete group replaces; ``incomplete`` are parts of groups
    not (or not yet) fully published; ``rejected`` are files that are not the project's or
    cannot be read, each with the reason.
    """

    partition: str
    visible: tuple[StoredFile, ...]
    superseded: tuple[StoredFile, ...]
    incomplete: tuple[StoredFile, ...]
    groups: tuple[str, ...]
    rejected: tuple[RejectedFile, ...] = ()

    @property
    def uncompacted(self) -> tuple[StoredFile, ...]:
        """Visible files that are a writer's small files (not part of a compaction group)."""
        return tuple(f for f in self.visible if paths.is_landing_name(_name(f)))


_EXPECTED = f"a landing hour partition holds only files named {paths.EXPECTED_NAMES}"


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
        meta = pq.read_schema(warehouse.open_input(f.path)).metadata or {}
    except FileNotFoundError as exc:
        raise FileVanishedError(f.path) from exc
    except (OSError, pa.ArrowException) as exc:
        raise CorruptFileError(f.path, str(exc)) from exc
    if META_KEY not in meta:
        raise CorruptFileError(f.path, "compacted file without a driftlake.compaction record")
    try:
        names = frozenset(json.loads(meta[META_KEY])["supersedes"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptFileError(f.path, f"unreadable driftlake.compaction record: {exc}") from exc
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
    """Split one partition's listing into visible, superseded, incomplete and rejected files.

    Pure given ``supersedes`` (the record of a compacted part; it raises CorruptFileError
    for a part whose record cannot be read). The record of every part of a group whose parts
    are all present is read: a group with an unreadable part is not visible, and what it
    replaced shows again, so readers see the same rows before and after that part is
    quarantined; the part is rejected unless a visible group replaces it anyway. Parts of
    groups still being published are not read. Should two complete groups claim the same
    file (only after a stale compaction lock was broken), the group with the smaller id wins
    and the other is ignored, so no row is ever visible twice.
    """
    files = sorted(files, key=lambda f: f.path)
    writers: list[StoredFile] = []
    rejected: list[RejectedFile] = []
    parts: dict[str, list[tuple[paths.CompactedName, StoredFile]]] = {}
    for f in files:
        name = _name(f)
        parsed = paths.parse_compacted_name(name)
        if f.path != f"{partition}/{name}":
            rejected.append(RejectedFile(f.path, f"in a subdirectory of {partition}: {_EXPECTED}"))
        elif paths.is_landing_name(name):
            writers.append(f)
        elif parsed is not None:
            parts.setdefault(parsed.group, []).append((parsed, f))
        else:
            rejected.append(RejectedFile(f.path, f"name {name!r} fits no pattern: {_EXPECTED}"))
    complete: dict[str, list[StoredFile]] = {}
    claims: dict[str, frozenset[str]] = {}
    unreadable: list[RejectedFile] = []
    for g, members in parts.items():
        n = members[0][0].parts
        if {(p.part, p.parts) for p, _ in members} != {(i, n) for i in range(n)}:
            continue  # not (yet) complete: not read, hides nothing
        complete[g] = [f for _, f in members]
        for f in complete[g]:  # every part holds the group's record
            try:
                claims.setdefault(g, supersedes(f))
            except CorruptFileError as exc:
                unreadable.append(RejectedFile(f.path, exc.reason))
    broken = {r.path.rsplit("/", 1)[1] for r in unreadable}
    active = sorted(claims)
    while True:
        hidden = set().union(*(claims[g] for g in active)) if active else set()
        top = [g for g in active if not any(_name(f) in hidden for f in complete[g])]
        # a visible group must be read whole: one with an unreadable part is not complete
        # (as it will not be once that part is quarantined), so what it replaced shows again
        conflict = next((g for g in top if any(_name(f) in broken for f in complete[g])), None)
        conflict = conflict or next(
            (b for i, a in enumerate(top) for b in top[i + 1 :] if claims[a] & claims[b]), None
        )
        if conflict is None:
            break
        active.remove(conflict)
    # an unreadable part that a visible group replaces is merely superseded
    rejected += [r for r in unreadable if r.path.rsplit("/", 1)[1] not in hidden]
    present = {_name(f) for f in writers} | {_name(f) for m in parts.values() for _, f in m}
    unread = {r.path for r in unreadable}
    rejected += _damaged(parts, active, claims, hidden, present, unread, supersedes)
    bad = {r.path for r in rejected}
    top_files = [f for g in top for f in complete[g]]
    visible = [f for f in writers if _name(f) not in hidden] + top_files
    incomplete = [f for g, m in parts.items() if g not in active for _, f in m if f.path not in bad]
    keep = {f.path for f in top_files} | {f.path for f in incomplete} | bad
    superseded = [f for f in files if _name(f) in hidden and f.path not in keep]
    return PartitionView(
        partition=partition,
        visible=tuple(sorted(visible, key=lambda f: f.path)),
        superseded=tuple(superseded),
        incomplete=tuple(incomplete),
        groups=tuple(sorted(top)),
        rejected=tuple(sorted(rejected, key=lambda r: r.path)),
    )


def _damaged(
    parts: dict[str, list[tuple[paths.CompactedName, StoredFile]]],
    active: list[str],
    claims: dict[str, frozenset[str]],
    hidden: set[str],
    present: set[str],
    unreadable: set[str],
    supersedes: Callable[[StoredFile], frozenset[str]],
) -> list[RejectedFile]:
    """Parts of incomplete groups that hold the only copy of their rows, to be kept.

    A run deletes what its group replaces only once the whole group is published, so an
    incomplete group whose replaced files are gone (and replaced by no other group) was
    complete once and lost a part: its other parts must not be deleted as a crashed run's
    would be. They are rejected, to be quarantined beside the lost part, together.
    """
    out = []
    for g, members in parts.items():
        kept = [f for _, f in members if _name(f) not in hidden and f.path not in unreadable]
        if g in active or not kept:
            continue
        claim = claims.get(g)
        for f in kept if claim is None else ():
            try:
                claim = supersedes(f)
                break
            except CorruptFileError:
                continue
        gone = sorted(n for n in claim or () if n not in present and n not in hidden)
        if not gone:
            continue  # still being published, or crashed: what it replaces is all there
        why = (
            f"part of compaction group {g}, which lacks a part (missing or unreadable) while "
            f"{len(gone)} files it replaced are gone (first: {gone[0]}): its rows are nowhere "
            "else; repair the group's parts and move them back together"
        )
        out += [RejectedFile(f.path, why) for f in kept]
    return out


def view_partition(warehouse: Warehouse, partition: str, attempts: int = 20) -> PartitionView:
    """List and resolve one landing partition, consistently even while compaction runs.

    A directory listing is not a snapshot: one taken while a compaction publishes its group
    and deletes the old files could hold neither all old files nor the group. The partition is
    listed until two listings in a row resolve to the same visible and rejected files.

    Raises
    ------
    LandingError
        If the partition keeps changing for ``attempts`` listings.
    """
    previous: PartitionView | None = None
    for _ in range(attempts):
        try:
            files = warehouse.list_files(partition, suffix="")  # foreign files too
            view = resolve(partition, files, lambda f: read_supersedes(warehouse, f))
        except FileVanishedError:
            previous = None
            continue
        # what is rejected must agree too: a rejected file gets moved to quarantine
        if previous is not None and (previous.visible, previous.rejected) == (
            view.visible,
            view.rejected,
        ):
            return view
        previous = view
    raise LandingError(
        f"landing partition {partition} changed on each of {attempts} listings; "
        "is a compaction running in a loop? Retry later"
    )
