"""Pure landing-zone maintenance rules: which files a reader sees, what compaction and
retention decide, and how schemas of two model versions unify."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import ModelSchema, SchemaError, unify_schemas
from ingest.maintain.compaction import CompactionPolicy, plan_partition
from ingest.maintain.retention import expired_days, expired_hours
from ingest.manifest import resolve
from ingest.paths import compacted_file_name, parse_compacted_name
from ingest.schema import FeatureSpec
from ingest.storage import StoredFile

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

PART = "landing/model=m/date=2026-01-01/hour=00"
HOUR0 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1e6)
HOUR_US = 3_600_000_000


def stored(name: str, mtime_s: float = 0.0) -> StoredFile:
    return StoredFile(f"{PART}/{name}", 1, int(mtime_s * 1e9))


def writer_file(i: int) -> str:
    return f"r1-{i:012d}-{i:08x}.parquet"


def names(files) -> list[str]:
    return sorted(f.path.rsplit("/", 1)[1] for f in files)


def test_a_complete_group_hides_what_it_supersedes_an_incomplete_one_hides_nothing():
    sources = [writer_file(i) for i in range(3)]
    done = [compacted_file_name("a" * 12, p, 2) for p in range(2)]
    half = [compacted_file_name("b" * 12, 0, 2)]  # a crashed run published 1 of 2 parts
    claims = {"a" * 12: frozenset(sources[:2]), "b" * 12: frozenset(sources)}
    files = [stored(n) for n in [*sources, *done, *half]]
    view = resolve(
        PART, files, lambda f: claims[parse_compacted_name(f.path.rsplit("/", 1)[1]).group]
    )
    assert names(view.visible) == sorted([sources[2], *done])
    assert names(view.superseded) == sorted(sources[:2])
    assert names(view.incomplete) == half
    assert names(view.uncompacted) == [sources[2]]
    assert view.groups == ("a" * 12,)


def test_nested_groups_and_conflicting_groups_never_show_a_row_twice():
    s = [writer_file(i) for i in range(3)]
    g1 = compacted_file_name("1" * 12, 0, 1)
    g2 = compacted_file_name("2" * 12, 0, 1)  # re-compaction: g1 plus a late file
    g3 = compacted_file_name("3" * 12, 0, 1)  # a rogue run claiming the same late file
    claims = {g1: {s[0], s[1]}, g2: {g1, s[2]}, g3: {s[2]}}
    view = resolve(
        PART,
        [stored(n) for n in [*s, g1, g2, g3]],
        lambda f: frozenset(claims[f.path.rsplit("/", 1)[1]]),
    )
    assert names(view.visible) == [g2]  # g2 wins over g3 (smaller id): s2 read once
    assert names(view.incomplete) == [g3]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["write", "compact", "crash", "delete"]), st.integers(0, 9)),
        max_size=25,
    )
)
def test_any_history_of_writes_compactions_crashes_and_deletes_shows_each_row_once(steps):
    rows: dict[str, set[int]] = {}  # file name -> the rows it holds
    claims: dict[str, frozenset[str]] = {}
    present: list[str] = []
    n_rows = 0

    def view():
        return resolve(
            PART, [stored(n) for n in present], lambda f: claims[f.path.rsplit("/", 1)[1]]
        )

    for i, (op, k) in enumerate(steps):
        visible = [f.path.rsplit("/", 1)[1] for f in view().visible]
        if op == "write":
            name = writer_file(i)
            rows[name] = set(range(n_rows, n_rows + k + 1))
            n_rows += k + 1
            present.append(name)
        elif op in ("compact", "crash") and visible:
            group = f"{i:012x}"
            parts = 1 + k % 3
            union = set().union(*(rows[v] for v in visible))
            made = [compacted_file_name(group, p, parts) for p in range(parts)]
            for p, name in enumerate(made):
                rows[name] = {r for r in union if r % parts == p}
                claims[name] = frozenset(visible)
            present += made[:-1] if op == "crash" else made
        elif op == "delete":
            present[:] = [
                n for n in present if n not in {f.path.rsplit("/", 1)[1] for f in view().superseded}
            ]
        seen = [r for f in view().visible for r in rows[f.path.rsplit("/", 1)[1]]]
        assert sorted(seen) == list(range(n_rows))


def test_compaction_plan_respects_limit_grace_and_delete_delay():
    policy = CompactionPolicy(delete_after_seconds=300)
    sources = [stored(writer_file(i)) for i in range(2)]
    group = stored(compacted_file_name("c" * 12, 0, 1), mtime_s=1000)
    fresh = resolve(PART, sources, lambda f: frozenset())
    assert plan_partition(fresh, limit_us=HOUR0 + HOUR_US - 1, now_s=1e9, policy=policy) is None
    plan = plan_partition(fresh, limit_us=HOUR0 + HOUR_US, now_s=1e9, policy=policy)
    assert plan is not None and plan.rewrite and plan.delete == ()
    done = resolve(PART, [*sources, group], lambda f: frozenset(names(sources)))
    assert plan_partition(done, limit_us=HOUR0 + HOUR_US, now_s=1299, policy=policy) is None
    later = plan_partition(done, limit_us=HOUR0 + HOUR_US, now_s=1300, policy=policy)
    assert later is not None and not later.rewrite and len(later.delete) == 2
    with pytest.raises(Exception, match="row_group_rows"):
        CompactionPolicy(row_group_rows=1000)


def test_retention_ages():
    now = datetime(2026, 1, 31, 12, tzinfo=UTC).timestamp()
    assert expired_hours([HOUR0, HOUR0 + HOUR_US], now, (30 * 24 + 11) * 3600) == [HOUR0]
    assert expired_days(["2026-01-01", "2026-01-29", "2026-01-30"], now, 1.5 * 86400) == [
        "2026-01-01",
        "2026-01-29",
    ]


def test_two_model_versions_unify_without_losing_a_feature():
    v1 = ModelSchema("m", (FeatureSpec("a"), FeatureSpec("b")), version="v1")
    v2 = ModelSchema("m", (FeatureSpec("a"), FeatureSpec("b"), FeatureSpec("c")), version="v2")
    assert v2.arrow_schema().metadata[b"driftlake.model_version"] == b"v2"
    old = v1.arrow_schema()
    old = old.set(old.get_field_index("b"), pa.field("b", pa.float32()))
    unified = unify_schemas([old, v2.arrow_schema()])
    assert unified.names == [*v1.arrow_schema().names[:6], "c", "prediction", "score"]
    assert unified.field("b").type == pa.float64() and unified.field("c").type == pa.float64()
    # a client's float32 batch is widened to the landing type before it is written
    batch = pa.table({n: pa.array([1.5], pa.float32()) for n in ("a", "b", "c")})
    batch = batch.append_column("ts", pa.array([0], pa.timestamp("us", "UTC")))
    for n in ("request_id", "replica", "model_version"):
        batch = batch.append_column(n, pa.array(["x"]))
    batch = batch.append_column("prediction", pa.array([1.0])).append_column(
        "score", pa.array([None], pa.float64())
    )
    assert v2.conform(batch).schema.equals(v2.arrow_schema())
    text = pa.schema([("a", pa.string())])
    cats = pa.schema([("a", pa.dictionary(pa.int32(), pa.string()))])
    assert unify_schemas([text, cats]).field("a").type == pa.string()
    with pytest.raises(SchemaError, match="column 'a' has incompatible types"):
        unify_schemas([v1.arrow_schema(), text])
