"""Names that become paths or labels pass one check everywhere, and a landing hour's listing
rejects (with the reason) every file that is not the project's or cannot be read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from analytics.settings import AnalyticsSettings
from ingest import ConfigError, CorruptFileError
from ingest import paths as p
from ingest.manifest import resolve
from ingest.paths import check_name, compacted_file_name
from ingest.storage import StoredFile
from serving.settings import ServingSettings

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

HOSTILE = ["x/../../../victim", "..", "../x", "a/b", "r1\n", "m\n", ".hidden", "-x", "", "a b"]
HOSTILE += ["x" * 101, "r1\r", "caf\u00e9", "a\x00b"]
PART = "landing/model=m/date=2026-01-01/hour=00"
TS = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("name", ["breast_cancer", "r1", "a.b-c_1", "0", "x" * 100])
def test_usable_names_pass(name):
    assert check_name("model", name) == name


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused_with_the_rule(name):
    with pytest.raises(ConfigError, match=r"replica name .* expected 1-100 characters"):
        check_name("replica", name)


@pytest.mark.parametrize("name", HOSTILE)
def test_no_library_path_builder_takes_a_hostile_name(name):
    builders = [
        lambda: p.partition_of(name, TS),
        lambda: p.hour_partition(name, 0),
        lambda: p.model_landing_dir(name),
        lambda: p.drift_dir(name),
        lambda: p.drift_window_path(name, TS, 1),
        lambda: p.drift_window_path("m", TS, 1, root=f"backfill/{name}"),
        lambda: p.state_path(name, "checkpoint.json"),
        lambda: p.state_path("m", name),
        lambda: p.progress_path(name, "analytics"),
        lambda: p.progress_path("m", name),
        lambda: p.compaction_lock_path(name),
        lambda: p.backfill_root(name),
        lambda: p.landing_file_name(name, 1),
        lambda: p.model_cache_path(name),
    ]
    for build in builders:
        with pytest.raises(ConfigError):
            build()


def test_a_history_root_is_the_live_one_or_a_backfill():
    assert p.drift_dir("m", p.backfill_root("b1")) == "backfill/b1/model=m"
    for root in ("../drift", "/tmp", "drift/../x", "backfill", "elsewhere/b1"):
        with pytest.raises(ConfigError, match=r"history root|backfill name"):
            p.drift_dir("m", root)


def test_settings_refuse_hostile_names_naming_the_setting(monkeypatch):
    for cls, field in (
        (AnalyticsSettings, "model_name"),
        (ServingSettings, "model_name"),
        (ServingSettings, "replica"),
        (ServingSettings, "model_version"),
    ):
        for name in ("x/../../../victim", "r1\n"):
            with pytest.raises(ValidationError) as err:
                cls(**{field: name})
            assert [e["loc"] for e in err.value.errors()] == [(field,)]
    # the environment goes through the same check
    monkeypatch.setenv("DRIFTLAKE_REPLICA", "r1\n")
    with pytest.raises(ValidationError, match="replica"):
        ServingSettings()
    monkeypatch.setenv("DRIFTLAKE_MODEL_NAME", "../victim")
    with pytest.raises(ValidationError, match="model_name"):
        AnalyticsSettings()


def test_landing_names_are_matched_whole():
    assert p.is_landing_name("r1-000000000001-abcdef12.parquet")
    for name in (
        "r1\n-000000000001-abcdef12.parquet",
        "r1-000000000001-abcdef12.parquet\n",
        "r1-000001-abcdef12.parquet",
        "data.parquet",
        "a/b-000000000001-abcdef12.parquet",
    ):
        assert not p.is_landing_name(name), name
    assert p.parse_compacted_name("compacted-aaaaaaaaaaaa-0000of0001.parquet\n") is None


def stored(name: str) -> StoredFile:
    return StoredFile(f"{PART}/{name}", 1, 0)


def writer_file(i: int) -> str:
    return f"r1-{i:012d}-{i:08x}.parquet"


def names(files) -> list[str]:
    return sorted(f.path.rsplit("/", 1)[1] for f in files)


def records(claims: dict[str, frozenset[str] | None]):
    """A ``supersedes`` over named parts: None stands for an unreadable part."""

    def supersedes(f: StoredFile) -> frozenset[str]:
        claim = claims[f.path.rsplit("/", 1)[1]]
        if claim is None:
            raise CorruptFileError(f.path, "truncated")
        return claim

    return supersedes


def test_foreign_names_and_subdirectories_are_rejected_with_the_expected_patterns():
    ours = [writer_file(1), compacted_file_name("a" * 12, 0, 1)]
    foreign = ["data.parquet", "r1-000001-abcdef12.parquet", "notes.txt", "_SUCCESS"]
    files = [stored(n) for n in [*ours, *foreign]]
    files.append(StoredFile(f"{PART}/sub/{writer_file(2)}", 1, 0))
    view = resolve(PART, files, records({ours[1]: frozenset()}))
    assert names(view.visible) == sorted(ours)
    assert sorted(r.path.removeprefix(PART + "/") for r in view.rejected) == sorted(
        [*foreign, f"sub/{writer_file(2)}"]
    )
    for r in view.rejected:
        assert "<replica>-<12-digit seq>-<8 hex>.parquet" in r.reason
        assert "compacted-<12 hex>-<4 digits>of<4 digits>.parquet" in r.reason


def test_an_unreadable_compacted_part_is_rejected_and_what_its_group_replaced_shows_again():
    s = [writer_file(i) for i in range(3)]
    lone = compacted_file_name("1" * 12, 0, 1)  # truncated, or without its record
    pair = [compacted_file_name("2" * 12, i, 2) for i in range(2)]
    view = resolve(
        PART,
        [stored(n) for n in [*s, lone, *pair]],
        records({lone: None, pair[0]: frozenset(s[1:]), pair[1]: None}),
    )
    assert [(r.path.rsplit("/", 1)[1], r.reason) for r in view.rejected] == [
        (lone, "truncated"),
        (pair[1], "truncated"),
    ]
    # the damaged group is not complete, as it will not be once its bad part is quarantined
    assert names(view.visible) == sorted(s)
    assert names(view.incomplete) == [pair[0]]
    after = resolve(PART, [stored(n) for n in [*s, pair[0]]], records({pair[0]: frozenset(s[1:])}))
    assert after.visible == view.visible and after.incomplete == view.incomplete


def test_valid_and_still_publishing_groups_are_never_rejected():
    s = [writer_file(i) for i in range(2)]
    done = compacted_file_name("1" * 12, 0, 1)
    publishing = compacted_file_name("2" * 12, 0, 2)  # part 1 of 2 not yet published
    view = resolve(
        PART,
        [stored(n) for n in [*s, done, publishing]],
        records({done: frozenset(s), publishing: frozenset(s)}),
    )
    assert view.rejected == ()
    assert names(view.visible) == [done] and names(view.incomplete) == [publishing]


def test_a_group_that_lost_a_part_after_its_sources_went_is_kept_whole_for_quarantine():
    s = [writer_file(i) for i in range(2)]
    pair = [compacted_file_name("1" * 12, i, 2) for i in range(2)]
    # part 1 is gone (quarantined, or deleted by hand) and so are the files the group replaced
    view = resolve(PART, [stored(pair[0])], records({pair[0]: frozenset(s)}))
    assert view.visible == () and view.incomplete == ()  # never deleted as a crashed run's
    assert [r.path.rsplit("/", 1)[1] for r in view.rejected] == [pair[0]]
    assert "its rows are nowhere else" in view.rejected[0].reason
    # the same with part 1 still there but torn: both go to quarantine, together
    torn = resolve(PART, [stored(n) for n in pair], records({pair[0]: frozenset(s), pair[1]: None}))
    assert names(view.visible) == [] and [r.reason for r in torn.rejected][1] == "truncated"
    assert [r.path.rsplit("/", 1)[1] for r in torn.rejected] == pair


def test_an_unreadable_part_a_newer_group_replaces_is_merely_superseded():
    s = [writer_file(i) for i in range(3)]
    old = [compacted_file_name("1" * 12, i, 2) for i in range(2)]
    new = compacted_file_name("2" * 12, 0, 1)  # re-compaction of old plus a late file
    view = resolve(
        PART,
        [stored(n) for n in [*s, *old, new]],
        records({old[0]: frozenset(s[:2]), old[1]: None, new: frozenset({*old, s[2]})}),
    )
    assert view.rejected == ()  # nobody reads it: compaction deletes it, as any superseded file
    assert names(view.visible) == [new]
    assert names(view.superseded) == sorted([*s, *old])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["write", "compact", "crash", "delete", "corrupt", "quarantine"]),
            st.integers(0, 9),
        ),
        max_size=25,
    )
)
def test_unreadable_parts_and_their_quarantine_never_show_a_row_twice(steps):
    rows: dict[str, set[int]] = {}  # file name -> the rows it holds
    claims: dict[str, frozenset[str] | None] = {}  # None: the part is unreadable
    present: list[str] = []
    n_rows = 0

    def view():
        return resolve(PART, [stored(n) for n in present], records(claims))

    for i, (op, k) in enumerate(steps):
        now = view()
        visible = names(now.visible)
        if op == "write":
            name = writer_file(i)
            rows[name] = set(range(n_rows, n_rows + k + 1))
            n_rows += k + 1
            present.append(name)
        elif op in ("compact", "crash") and visible:
            group, parts = f"{i:012x}", 1 + k % 3
            union = set().union(*(rows[v] for v in visible))
            made = [compacted_file_name(group, p, parts) for p in range(parts)]
            # as compaction records it: the files it reads, and what their groups replaced
            replaced = frozenset(visible).union(*(claims.get(v) or () for v in visible))
            for p, name in enumerate(made):
                rows[name] = {r for r in union if r % parts == p}
                claims[name] = replaced
            present += made[:-1] if op == "crash" else made
        elif op == "delete":  # what compaction deletes: superseded and incomplete files
            gone = set(names(now.superseded)) | set(names(now.incomplete))
            present[:] = [n for n in present if n not in gone]
        elif op == "corrupt":
            parts = [n for n in present if n.startswith("compacted-")]
            if parts:
                claims[parts[k % len(parts)]] = None
        elif op == "quarantine":
            moved = {r.path.rsplit("/", 1)[1] for r in now.rejected}
            present[:] = [n for n in present if n not in moved]
            # moving the rejected files aside changes nothing a reader sees
            assert view().visible == now.visible
        seen = [r for f in view().visible for r in rows[f.path.rsplit("/", 1)[1]]]
        assert len(seen) == len(set(seen))  # never a row twice
        if all(c is not None for c in claims.values()):
            assert sorted(seen) == list(range(n_rows))  # and, with no corruption, none lost
