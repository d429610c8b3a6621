"""Where things live in the warehouse: the one place landing and history paths are built.

Layout (hive ``key=value`` partitions, relative to the warehouse root)::

    landing/model=<m>/date=YYYY-MM-DD/hour=HH/<replica>-<seq>-<uuid8>.parquet
    landing/model=<m>/date=YYYY-MM-DD/hour=HH/compacted-<group>-<part>of<parts>.parquet
    drift/model=<m>/date=YYYY-MM-DD/windows-<first id>-<last id>.parquet
    backfill/<run>/model=<m>/date=YYYY-MM-DD/windows-<first id>-<last id>.parquet
    _staging/<name>.tmp                  (temp files, outside every scanned tree)
    _state/model=<m>/<name>              (analytics checkpoints)
    _state/model=<m>/progress-<consumer>.json  (what each reader has finished with)
    _state/model=<m>/compaction.lock     (one compaction of a model at a time)
    _models/<key>.pkl                    (cached default models)
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from ingest.errors import ConfigError

LANDING = "landing"
DRIFT = "drift"
BACKFILL = "backfill"
STAGING = "_staging"
STATE = "_state"
MODELS = "_models"

# every regex here is used with fullmatch: with match and "$", "r1\n" would pass
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"
_NAME_RE = re.compile(_NAME)
_COMPACTED_RE = re.compile(
    r"compacted-(?P<group>[0-9a-f]{12})-(?P<part>\d{4})of(?P<parts>\d{4})\.parquet"
)
_FILE_RE = re.compile(
    rf"model=(?P<model>{_NAME})/date=(?P<date>\d{{4}}-\d{{2}}-\d{{2}})/hour=(?P<hour>\d{{2}})/"
    rf"(?P<replica>{_NAME})-(?P<seq>\d{{12}})-(?P<uid>[0-9a-f]{{8}})\.parquet"
)
#: the names a landing hour partition may hold, as told to whoever finds another one
EXPECTED_NAMES = (
    "<replica>-<12-digit seq>-<8 hex>.parquet (a writer's file) or "
    "compacted-<12 hex>-<4 digits>of<4 digits>.parquet (a compaction group's part)"
)


def check_name(kind: str, value: str) -> str:
    """Return ``value`` if it is safe as a path segment and a label, else raise ConfigError.

    The one check of every name that becomes a path or a label: model, replica, model
    version, backfill, consumer. Such a name is 1-100 characters from letters, digits, ``_``,
    ``.`` and ``-``, not starting with ``.`` or ``-`` (so never ``..``, never a ``/``, never
    a newline).

    Parameters
    ----------
    kind
        What the name is (``"model"``, ``"replica"``...), for the error message.
    value
        The name.

    Raises
    ------
    ConfigError
        If ``value`` is not such a name.

    Example
    -------
    >>> check_name("model", "breast_cancer")
    'breast_cancer'
    """
    if not isinstance(value, str) or _NAME_RE.fullmatch(value) is None:
        raise ConfigError(
            f"{kind} name {value!r} is not usable: expected 1-100 characters from "
            "[A-Za-z0-9_.-] not starting with '.' or '-'; rename it"
        )
    return value


def partition_of(model: str, ts: datetime) -> str:
    """Return the landing partition (relative dir) holding rows of ``model`` stamped ``ts``."""
    ts = ts.astimezone(UTC)
    return f"{LANDING}/model={check_name('model', model)}/date={ts:%Y-%m-%d}/hour={ts:%H}"


def hour_partition(model: str, hour_start_us: int) -> str:
    """Return the landing partition for the UTC hour starting at ``hour_start_us``."""
    return partition_of(model, datetime.fromtimestamp(hour_start_us / 1e6, tz=UTC))


def partition_hour_us(partition: str) -> int:
    """Return the start (µs since epoch) of the hour a landing partition path holds."""
    m = re.search(r"date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})", partition)
    if m is None:
        raise ValueError(f"{partition!r} is not a landing hour partition")
    start = datetime.strptime(f"{m[1]} {m[2]}", "%Y-%m-%d %H").replace(tzinfo=UTC)
    return int(start.timestamp()) * 1_000_000


def landing_file_name(replica: str, seq: int) -> str:
    """Return a new, writer-unique landing file name ``<replica>-<seq>-<uuid8>.parquet``."""
    return f"{check_name('replica', replica)}-{seq:012d}-{uuid.uuid4().hex[:8]}.parquet"


def compacted_file_name(group: str, part: int, parts: int) -> str:
    """Return the name of part ``part`` (0-based) of ``parts`` of compaction group ``group``."""
    return f"compacted-{group}-{part:04d}of{parts:04d}.parquet"


@dataclass(frozen=True)
class CompactedName:
    """The parts of a compacted file's name: its group, its part number and the group size."""

    group: str
    part: int
    parts: int


def parse_compacted_name(name: str) -> CompactedName | None:
    """Parse a compacted file's base name; None if it is not one."""
    m = _COMPACTED_RE.fullmatch(name)
    if m is None:
        return None
    return CompactedName(m["group"], int(m["part"]), int(m["parts"]))


def is_landing_name(name: str) -> bool:
    """True if ``name`` is a writer's landing file name ``<replica>-<seq>-<uuid8>.parquet``."""
    return parse_landing_path(f"model=m/date=2000-01-01/hour=00/{name}") is not None


def model_landing_dir(model: str) -> str:
    """Return the landing directory of one model (relative to the warehouse root)."""
    return f"{LANDING}/model={check_name('model', model)}"


def drift_dir(model: str, root: str = DRIFT) -> str:
    """Return the drift-history directory of one model (``root`` names a backfill's tree)."""
    return f"{_history_root(root)}/model={check_name('model', model)}"


def _history_root(root: str) -> str:
    # the live history, or one backfill's: nothing else, so no caller writes elsewhere
    if root != DRIFT:
        head, _, name = root.partition("/")
        if head != BACKFILL:
            raise ConfigError(
                f"history root {root!r} is not usable: expected {DRIFT!r} or "
                f"'{BACKFILL}/<name>' (see backfill_root)"
            )
        check_name("backfill", name)
    return root


def backfill_root(name: str) -> str:
    """Return the history root of a named backfill run."""
    return f"{BACKFILL}/{check_name('backfill', name)}"


def drift_window_path(model: str, window_end: datetime, window_id: int, root: str = DRIFT) -> str:
    """Return the history file of one window (as written before windows were batched)."""
    day = f"{window_end.astimezone(UTC):%Y-%m-%d}"
    return f"{drift_dir(model, root)}/date={day}/window-{window_id:010d}.parquet"


def drift_windows_path(
    model: str, window_end: datetime, first: int, last: int, root: str = DRIFT
) -> str:
    """Return the history file of windows ``first``..``last`` (inclusive), filed under the
    date of ``window_end``; the ids make rewriting the same windows idempotent."""
    day = f"{window_end.astimezone(UTC):%Y-%m-%d}"
    return f"{drift_dir(model, root)}/date={day}/windows-{first:010d}-{last:010d}.parquet"


_HISTORY_FILE = re.compile(r"/windows?-(\d+)(?:-(\d+))?\.parquet$")


def history_window_range(path: str) -> tuple[int, int] | None:
    """The first and last window id a history file holds, from its name (None: not one)."""
    m = _HISTORY_FILE.search(path)
    if m is None:
        return None
    first = int(m.group(1))
    return first, int(m.group(2) or first)


def model_cache_path(key: str) -> str:
    """Return where a trained default model is cached (outside every scanned tree)."""
    return f"{MODELS}/{check_name('model cache key', key)}.pkl"


def state_path(model: str, name: str) -> str:
    """Return the path of a small state object (a checkpoint) of one model."""
    return f"{STATE}/model={check_name('model', model)}/{check_name('state', name)}"


def progress_path(model: str, consumer: str) -> str:
    """Return where a reader of ``model`` records how far it has finished reading."""
    return state_path(model, f"progress-{check_name('consumer', consumer)}.json")


def compaction_lock_path(model: str) -> str:
    """Return the lock file that keeps compactions of one model from overlapping."""
    return state_path(model, "compaction.lock")


@dataclass(frozen=True)
class LandingPath:
    """The parts of a landing file's relative path."""

    model: str
    date: str
    hour: int
    replica: str
    seq: int

    @property
    def partition(self) -> str:
        return f"{LANDING}/model={self.model}/date={self.date}/hour={self.hour:02d}"


def parse_landing_path(rel: str) -> LandingPath | None:
    """Parse a landing file path relative to ``landing/``; None if it is not one of ours."""
    m = _FILE_RE.fullmatch(rel)
    if m is None:
        return None
    return LandingPath(
        model=m["model"],
        date=m["date"],
        hour=int(m["hour"]),
        replica=m["replica"],
        seq=int(m["seq"]),
    )
