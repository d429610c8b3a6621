"""Requests for a schema with categorical features: numbers and strings per column, each wrong
kind named by row, column and the kind the feature takes."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from ingest import FeatureSpec, ModelSchema
from ingest.capture import MAX_VALUE_BYTES
from serving import InvalidRequest
from serving._mixed_request import MixedRequestParser, MixedRows
from serving.request import MAX_ERRORS

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

SCHEMA = ModelSchema(
    "churn",
    (
        FeatureSpec("age"),
        FeatureSpec("plan", "categorical"),
        FeatureSpec("tenure"),
        FeatureSpec("payment", "categorical"),
    ),
)
COLUMNS = list(SCHEMA.feature_names)
PARSER = MixedRequestParser(SCHEMA, max_rows=4, nullable=["payment"])
ROW = [41.5, "pro", 3, "card"]


def body(columns=COLUMNS, data=(ROW,)) -> bytes:
    return orjson.dumps({"features": {"columns": list(columns), "data": [list(r) for r in data]}})


def raw_row(*values: str) -> bytes:
    """A one-row body whose values are raw JSON tokens (NaN and 1e999 are not JSON)."""
    row = ", ".join(values).encode()
    return b'{"features": {"columns": ' + orjson.dumps(COLUMNS) + b', "data": [[' + row + b"]]}}"


def rejected(raw: bytes, parser: MixedRequestParser = PARSER) -> list[dict]:
    with pytest.raises(InvalidRequest) as info:
        parser.parse(raw)
    errors = info.value.errors
    assert errors
    for e in errors:
        assert set(e) == {"loc", "msg", "type"} and e["loc"][0] == "body"
    orjson.dumps({"detail": errors})
    return errors


def only(raw: bytes) -> dict:
    errors = rejected(raw)
    assert len(errors) == 1, errors
    return errors[0]


def test_rows_split_into_numbers_and_strings_in_schema_order():
    rows = PARSER.parse(body(data=[ROW, [7, "basic", 60.25, None]]))
    assert isinstance(rows, MixedRows) and len(rows) == 2
    assert rows.numeric.dtype == np.float64 and rows.numeric.flags.c_contiguous
    assert rows.numeric.tolist() == [[41.5, 3.0], [7.0, 60.25]]
    assert rows.categorical == (("pro", "basic"), ("card", None))


def test_columns_in_any_order():
    order = ["payment", "tenure", "plan", "age"]
    rows = PARSER.parse(body(order, [["bank", 12, "team", 30]]))
    assert rows.numeric.tolist() == [[30.0, 12.0]]
    assert rows.categorical == (("team",), ("bank",))


def test_any_string_is_a_category_and_unicode_is_kept():
    rows = PARSER.parse(body(data=[[1, "", 2, "ü-直"], [1, "not seen in training", 2, "x"]]))
    assert rows.categorical[0] == ("", "not seen in training")
    assert rows.categorical[1] == ("ü-直", "x")


def test_a_schema_of_categorical_features_only():
    schema = ModelSchema("m", (FeatureSpec("a", "categorical"), FeatureSpec("b", "categorical")))
    rows = MixedRequestParser(schema, max_rows=2).parse(
        orjson.dumps({"features": {"columns": ["a", "b"], "data": [["x", "y"]]}})
    )
    assert rows.numeric.shape == (1, 0) and len(rows) == 1
    assert rows.categorical == (("x",), ("y",))


@pytest.mark.parametrize(
    ("tokens", "j", "kind", "msg"),
    [
        (
            ("41", "2", "3", '"card"'),
            1,
            "string_type",
            "row 0, column 'plan': expected a string (categorical feature), got the number 2",
        ),
        (
            ("41", "true", "3", '"card"'),
            1,
            "string_type",
            "row 0, column 'plan': expected a string (categorical feature), got a boolean",
        ),
        (
            ("41", '["pro"]', "3", '"card"'),
            1,
            "string_type",
            "row 0, column 'plan': expected a string (categorical feature), got a list",
        ),
        (
            ("41", "null", "3", '"card"'),
            1,
            "string_type",
            "row 0, column 'plan': expected a string (categorical feature), got null (null is "
            "accepted only in columns with nulls in the reference)",
        ),
        (
            ('"41"', '"pro"', "3", '"card"'),
            0,
            "float_type",
            "row 0, column 'age': expected a JSON number (numeric feature), got the string '41'",
        ),
        (
            ("null", '"pro"', "3", '"card"'),
            0,
            "float_type",
            "row 0, column 'age': expected a JSON number (numeric feature), got null",
        ),
        (
            ("41", '"pro"', "false", '"card"'),
            2,
            "float_type",
            "row 0, column 'tenure': expected a JSON number (numeric feature), got a boolean",
        ),
        (
            ("NaN", '"pro"', "3", '"card"'),
            0,
            "finite_number",
            "row 0, column 'age': value is not a finite number (NaN and infinity are not accepted)",
        ),
        (
            ("41", '"pro"', "-Infinity", '"card"'),
            2,
            "finite_number",
            "row 0, column 'tenure': value is not a finite number",
        ),
        (
            ("1e999", '"pro"', "3", '"card"'),
            0,
            "finite_number",
            "row 0, column 'age': value is not a finite number",
        ),
        (
            ("1" + "0" * 400, '"pro"', "3", '"card"'),
            0,
            "finite_number",
            "row 0, column 'age': value is not a finite number",
        ),
    ],
    ids=[
        "number-for-category",
        "bool-for-category",
        "list-for-category",
        "null-where-reference-has-none",
        "string-for-number",
        "null-for-number",
        "bool-for-number",
        "nan",
        "infinity",
        "overflowing-float",
        "overflowing-integer",
    ],
)
def test_a_value_of_the_wrong_kind_names_row_column_and_kind(tokens, j, kind, msg):
    err = only(raw_row(*tokens))
    assert err["loc"] == ["body", "features", "data", 0, j]
    assert err["type"] == kind
    assert err["msg"].startswith(msg), err["msg"]


def test_null_is_accepted_where_the_reference_has_nulls_only():
    assert PARSER.parse(raw_row("41", '"pro"', "3", "null")).categorical[1] == (None,)
    strict = MixedRequestParser(SCHEMA, max_rows=4)  # no column has nulls
    with pytest.raises(InvalidRequest, match="column 'payment': expected a string"):
        strict.parse(raw_row("41", '"pro"', "3", "null"))


def test_a_category_over_the_capture_limit_is_422():
    fits = "é" * (MAX_VALUE_BYTES // 2)  # exactly the limit in UTF-8
    assert PARSER.parse(body(data=[[1, fits, 2, "card"]])).categorical[0] == (fits,)
    over = "é" * (MAX_VALUE_BYTES // 2) + "x"
    err = only(body(data=[ROW, [1, "pro", 2, over]]))
    assert err["loc"] == ["body", "features", "data", 1, 3]
    assert err["type"] == "string_too_long"
    assert err["msg"] == (
        f"row 1, column 'payment': the string is {MAX_VALUE_BYTES + 1} bytes (UTF-8) but a "
        f"categorical value may hold at most {MAX_VALUE_BYTES}"
    )


def test_errors_come_row_by_row_with_request_positions():
    order = ["plan", "age", "payment", "tenure"]
    errors = rejected(body(order, [["pro", "x", 1, 2], [3, 4, "card", "y"]]))
    assert [e["loc"][3:] for e in errors] == [[0, 1], [0, 2], [1, 0], [1, 3]]
    assert [e["msg"].split(":")[0] for e in errors] == [
        "row 0, column 'age'",
        "row 0, column 'payment'",
        "row 1, column 'plan'",
        "row 1, column 'tenure'",
    ]


def test_many_errors_are_capped():
    many = MixedRequestParser(SCHEMA, max_rows=100, nullable=["payment"])
    errors = rejected(body(data=[["x", 1, "y", 2]] * 100), many)
    assert len(errors) == MAX_ERRORS + 1
    assert errors[-1]["msg"] == f"{400 - MAX_ERRORS} more errors not shown"


@pytest.mark.parametrize(
    ("raw", "loc", "kind", "words"),
    [
        (b"{", ["body"], "json_invalid", "not valid JSON"),
        (b'"rows"', ["body"], "model_type", "must be a JSON object"),
        (
            b'{"features": {"columns": ["age"], "data": [1.0]}}',
            ["body", "features", "data", 0],
            "list_type",
            "row 0 must be a list of values, got the number 1.0",
        ),
        (
            body(COLUMNS[:3], [ROW[:3]]),
            ["body", "features", "columns"],
            "missing_column",
            "missing column 'payment'; expected the model's 4 feature columns",
        ),
        (
            body([*COLUMNS[:3], "paymnet"], [ROW]),
            ["body", "features", "columns", 3],
            "unknown_column",
            "unknown column 'paymnet' (did you mean 'payment'?)",
        ),
        (
            body(data=[ROW, ROW[:3]]),
            ["body", "features", "data", 1],
            "row_length",
            "row 1 has 3 values but 4 columns were given",
        ),
        (
            body(data=[]),
            ["body", "features", "data"],
            "empty_data",
            "data has no rows; expected 1 to 4 rows of values",
        ),
        (
            body(data=[ROW] * 5),
            ["body", "features", "data"],
            "too_many_rows",
            "data has 5 rows but at most 4 are accepted",
        ),
    ],
    ids=["json", "not-object", "row-not-list", "missing", "unknown", "ragged", "empty", "many"],
)
def test_the_numeric_parsers_errors_hold_for_mixed_requests(raw, loc, kind, words):
    err = rejected(raw)[0]
    assert err["loc"] == loc and err["type"] == kind
    assert words in err["msg"], err["msg"]
