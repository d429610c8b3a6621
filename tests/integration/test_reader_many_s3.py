"""On S3 (moto's server on loopback) one scan of many landing files reads what file-by-file
reads give, and a torn or vanished object among them is still named."""

from __future__ import annotations

import logging

import obstore as obs
import pyarrow as pa
import pytest

from harness import MODEL
from harness.landing import holdout_rows, write_landing
from ingest import CorruptFileError, FileVanishedError, Warehouse
from ingest import reader as reader_module
from ingest.listing import list_landing
from ingest.reader import RowSelection, read_file, read_many, read_many_keys, read_rows
from tests.unit.test_reader_many import DAY, KINDS, check, expected, per_file_keys, publish

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_mixed_versions_on_s3_read_in_one_scan_as_file_by_file(s3_url, caplog):
    wh = Warehouse(s3_url)
    v1 = {"a": pa.float32(), "b": pa.int32(), "c": None, "replica": pa.string()}
    v2 = {"a": pa.float64(), "b": pa.int64(), "c": KINDS["c"][2], "replica": KINDS["replica"][1]}
    files = [(v1, 3), (v2, 0), (v1, 4), (v2, 5), (v1, 1)]
    paths = publish(wh, files)
    tables = [read_file(wh, p) for p in paths]
    columns = ["b", "c", "nowhere", "a", "replica"]
    want = expected(files, tables, columns)
    with caplog.at_level(logging.DEBUG, logger="driftlake.ingest.reader"):
        rows, counts = read_many(wh, paths, columns)
        keys, failed = read_many_keys(wh, paths)
    assert "scan_fallback" not in caplog.text  # one scan each, over the store
    check(rows, want)
    assert counts.tolist() == [3, 0, 4, 5, 1]
    assert failed == [] and keys.equals(per_file_keys(wh, paths))
    rows, counts = reader_module._read_each(wh, paths, columns)
    check(rows, want)


def test_a_torn_or_vanished_object_among_many_is_named_on_s3(s3_url):
    wh = Warehouse(s3_url)
    write_landing(wh, holdout_rows(60, seed=2), start=DAY, per_file=10)
    paths = [f.path for f in list_landing(wh, MODEL)]
    whole = bytes(obs.get(wh.store, paths[3]).bytes())
    obs.put(wh.store, paths[3], whole[: len(whole) // 2])
    obs.delete(wh.store, paths[1])
    with pytest.raises(FileVanishedError) as gone:
        read_many(wh, paths, ["mean radius"])
    assert gone.value.path == paths[1]
    with pytest.raises(CorruptFileError) as torn:
        read_rows(wh, [RowSelection(p, (0,)) for p in paths if p != paths[1]], ["mean radius"])
    assert torn.value.path == paths[3]
    keys, failed = read_many_keys(wh, paths)
    assert [(type(e), e.path) for e in failed] == [
        (FileVanishedError, paths[1]),
        (CorruptFileError, paths[3]),
    ]
    assert keys.group_by("file", maintain_order=True).len().rows() == [
        (i, 10) for i in (0, 2, 4, 5)
    ]
