"""Request validation: every malformed body gets a 422 detail naming the field and the problem."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from serving import InvalidRequest, RequestParser

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

COLUMNS = ["mean radius", "mean texture", "mean area"]
PARSER = RequestParser(COLUMNS, max_rows=4)


def body(columns=COLUMNS, data=((1.0, 2.0, 3.0),)) -> bytes:
    return orjson.dumps({"features": {"columns": list(columns), "data": [list(r) for r in data]}})


def rejected(raw: bytes) -> list[dict]:
    with pytest.raises(InvalidRequest) as info:
        PARSER.parse(raw)
    errors = info.value.errors
    assert errors, "an InvalidRequest always carries at least one error"
    for e in errors:
        assert set(e) == {"loc", "msg", "type"} and e["loc"][0] == "body"
    orjson.dumps({"detail": errors})  # the 422 body serializes as-is
    return errors


def only(raw: bytes) -> dict:
    errors = rejected(raw)
    assert len(errors) == 1, errors
    return errors[0]


def test_valid_rows_come_back_as_float64_in_model_order():
    x = PARSER.parse(body(data=[[1, 2.5, 3], [4, 5, 6e300]]))
    assert x.dtype == np.float64 and x.flags.c_contiguous
    assert x.tolist() == [[1.0, 2.5, 3.0], [4.0, 5.0, 6e300]]


def test_columns_in_any_order_are_reordered():
    shuffled = ["mean area", "mean radius", "mean texture"]
    x = PARSER.parse(body(shuffled, [[3.0, 1.0, 2.0], [30.0, 10.0, 20.0]]))
    assert x.flags.c_contiguous
    assert x.tolist() == [[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]]


def test_unknown_top_level_and_feature_keys_are_ignored():
    raw = orjson.dumps(
        {"model": "x", "features": {"columns": COLUMNS, "index": [7], "data": [[1, 2, 3]]}}
    )
    assert PARSER.parse(raw).tolist() == [[1.0, 2.0, 3.0]]


@pytest.mark.parametrize(
    ("raw", "loc", "kind", "words"),
    [
        (b'{"features": {"columns": [', ["body"], "json_invalid", "not valid JSON"),
        (b"", ["body"], "json_invalid", "not valid JSON"),
        (b"[1, 2]", ["body"], "model_type", "must be a JSON object, got a list"),
        (b'{"rows": []}', ["body", "features"], "missing", "'features' is required"),
        (
            b'{"features": {"data": [[1, 2, 3]]}}',
            ["body", "features", "columns"],
            "missing",
            "'features.columns' is required",
        ),
        (
            b'{"features": [[1, 2, 3]]}',
            ["body", "features"],
            "model_type",
            "'features' must be an object",
        ),
        (
            b'{"features": {"columns": ["mean radius"], "data": [1.0]}}',
            ["body", "features", "data", 0],
            "list_type",
            "row 0 must be a list of numbers, got the number 1.0",
        ),
        (
            b'{"features": {"columns": [1, "mean texture", "mean area"], "data": [[1, 2, 3]]}}',
            ["body", "features", "columns", 0],
            "string_type",
            "column 0 must be a feature name (a string), got the number 1",
        ),
    ],
)
def test_wrong_shape_or_json(raw, loc, kind, words):
    err = only(raw)
    assert err["loc"] == loc and err["type"] == kind
    assert words in err["msg"]


@pytest.mark.parametrize(
    ("value", "kind", "words"),
    [
        ('"1.0"', "float_type", "expected a JSON number, got the string '1.0'"),
        ("true", "float_type", "expected a JSON number, got a boolean"),
        ("null", "float_type", "expected a JSON number, got null"),
        ("[1]", "float_type", "expected a JSON number, got a list"),
        ("NaN", "finite_number", "value is not a finite number"),
        ("Infinity", "finite_number", "value is not a finite number"),
        ("-Infinity", "finite_number", "value is not a finite number"),
        ("1e999", "finite_number", "value is not a finite number"),
    ],
)
def test_non_numeric_and_non_finite_values_name_row_and_column(value, kind, words):
    raw = (
        b'{"features": {"columns": ["mean radius", "mean texture", "mean area"], '
        b'"data": [[1, 2, 3], [4, 5, ' + value.encode() + b"]]}}"
    )
    err = only(raw)
    assert err["loc"] == ["body", "features", "data", 1, 2]
    assert err["type"] == kind
    assert err["msg"].startswith("row 1, column 'mean area': ")
    assert words in err["msg"]


def test_missing_column():
    err = only(body(COLUMNS[:2], [[1.0, 2.0]]))
    assert err["loc"] == ["body", "features", "columns"] and err["type"] == "missing_column"
    assert err["msg"] == "missing column 'mean area'; expected the model's 3 feature columns"


def test_unknown_column_suggests_the_close_name():
    # the unknown name is reported where it was given; the column it displaced is missing too
    errors = rejected(body(["mean radius", "mean texture", "mean areaa"], [[1.0, 2.0, 3.0]]))
    assert [e["type"] for e in errors] == ["unknown_column", "missing_column"]
    err = errors[0]
    assert err["loc"] == ["body", "features", "columns", 2]
    assert err["msg"] == (
        "unknown column 'mean areaa' (did you mean 'mean area'?); "
        "expected the model's 3 feature columns"
    )


def test_unknown_extra_column():
    err = only(body([*COLUMNS, "foo"], [[1.0, 2.0, 3.0, 4.0]]))
    assert err["loc"] == ["body", "features", "columns", 3] and err["type"] == "unknown_column"
    assert err["msg"] == "unknown column 'foo'; expected the model's 3 feature columns"


def test_duplicate_column():
    errors = rejected(body([*COLUMNS, "mean radius"], [[1.0, 2.0, 3.0, 1.0]]))
    assert len(errors) == 1
    assert errors[0]["loc"] == ["body", "features", "columns", 3]
    assert errors[0]["type"] == "duplicate_column"
    assert "duplicate column 'mean radius' (also at position 0)" in errors[0]["msg"]


def test_empty_columns():
    err = only(body([], [[]]))
    assert err["loc"] == ["body", "features", "columns"] and err["type"] == "empty_columns"
    assert "columns is empty" in err["msg"]


def test_ragged_rows_are_each_named():
    errors = rejected(body(data=[[1.0, 2.0, 3.0], [1.0, 2.0], [1.0, 2.0, 3.0, 4.0]]))
    assert [e["loc"] for e in errors] == [
        ["body", "features", "data", 1],
        ["body", "features", "data", 2],
    ]
    assert errors[0]["msg"] == "row 1 has 2 values but 3 columns were given"
    assert errors[1]["msg"] == "row 2 has 4 values but 3 columns were given"
    assert {e["type"] for e in errors} == {"row_length"}


def test_rows_all_of_the_same_wrong_length():
    errors = rejected(body(data=[[1.0, 2.0], [3.0, 4.0]]))
    assert [e["loc"][-1] for e in errors] == [0, 1]
    assert errors[1]["msg"] == "row 1 has 2 values but 3 columns were given"


def test_wrong_columns_and_ragged_rows_are_reported_together():
    errors = rejected(body(["mean radius", "foo"], [[1.0, 2.0], [1.0]]))
    assert [e["type"] for e in errors] == ["unknown_column", "missing_column", "row_length"]


def test_empty_data():
    err = only(body(data=[]))
    assert err["loc"] == ["body", "features", "data"] and err["type"] == "empty_data"
    assert err["msg"] == "data has no rows; expected 1 to 4 rows of numbers"


def test_too_many_rows():
    err = only(body(data=[[1.0, 2.0, 3.0]] * 5))
    assert err["loc"] == ["body", "features", "data"] and err["type"] == "too_many_rows"
    assert "data has 5 rows but at most 4 are accepted per request" in err["msg"]


def test_many_errors_are_capped():
    errors = rejected(body(data=[["x"] * 3] * 4))
    assert len(errors) == 12  # 4 rows x 3 values: all shown
    many = RequestParser(COLUMNS, max_rows=100)
    with pytest.raises(InvalidRequest) as info:
        many.parse(body(data=[["x"] * 3] * 100))
    assert len(info.value.errors) == 21
    assert info.value.errors[-1]["msg"] == "280 more errors not shown"
