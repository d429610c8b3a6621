"""Any model: what it is fed (numpy, pandas, polars, Arrow), how it is named by import path,
and how its output lands (labels, class indices, values, the last class's probability)."""

from __future__ import annotations

import sys
import textwrap
from typing import TYPE_CHECKING, Optional

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pytest

from ingest import ConfigError, FeatureSpec, ModelSchema
from serving._mixed_request import MixedRows
from serving._model_input import converter, declared_input, resolve_input
from serving._model_source import import_model
from serving.model import ModelError, Predictor
from tests import models_for_serving as models

if TYPE_CHECKING:
    import pandas as pd

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

NUMERIC = ModelSchema("m", (FeatureSpec("a"), FeatureSpec("b")))
MIXED = ModelSchema("m", (FeatureSpec("a"), FeatureSpec("plan", "categorical"), FeatureSpec("b")))
ROWS = MixedRows(np.array([[1.0, 2.0], [3.0, 4.0]]), (("pro", None),))


def takes_polars(rows: pl.DataFrame) -> list[int]:
    return [0] * rows.height


def takes_pandas(rows: pd.DataFrame) -> list[int]:  # pandas only imported for type checkers
    return [0] * len(rows)


def takes_ndarray(rows: np.ndarray): ...


def takes_ndarray_alias(rows: npt.NDArray[np.float64]): ...


def takes_arrow(rows: pa.Table, *, strict: bool = True): ...


def takes_optional(rows: Optional[pl.DataFrame]): ...  # noqa: UP045 (the point of the test)


def takes_anything(rows): ...


class Scorer:
    def predict(self, rows: pa.Table) -> list[int]:
        return [0] * rows.num_rows


class CallableScorer:
    def __call__(self, rows: pl.DataFrame) -> list[int]:
        return [0] * rows.height


@pytest.mark.parametrize(
    ("model", "kind"),
    [
        (takes_polars, "polars"),
        (takes_pandas, "pandas"),
        (takes_ndarray, "numpy"),
        (takes_ndarray_alias, "numpy"),
        (takes_arrow, "arrow"),
        (Scorer(), "arrow"),
        (CallableScorer(), "polars"),
        (takes_optional, None),
        (takes_anything, None),
        (len, None),
    ],
    ids=lambda v: getattr(v, "__name__", type(v).__name__) if callable(v) else str(v),
)
def test_the_declared_input_is_the_first_parameters_annotation(model, kind):
    assert declared_input(model) == kind


def test_auto_follows_the_declaration_else_the_schema():
    assert resolve_input("auto", takes_anything, NUMERIC, "m") == "numpy"
    assert resolve_input("auto", takes_anything, MIXED, "m") == "polars"
    assert resolve_input("auto", takes_arrow, NUMERIC, "m") == "arrow"
    assert resolve_input("pandas", takes_polars, MIXED, "m") == "pandas"  # the setting wins


def test_numpy_for_categorical_features_is_refused():
    with pytest.raises(ConfigError, match=r"cannot hold the categorical \(string\) features"):
        resolve_input("numpy", takes_anything, MIXED, "model 'x'")
    with pytest.raises(ConfigError, match=r"the annotation of model .x..s first parameter"):
        resolve_input("auto", takes_ndarray, MIXED, "model 'x'")


def test_pandas_that_cannot_be_imported_is_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # what a missing pandas raises
    with pytest.raises(ConfigError, match=r"takes a pandas DataFrame .* pandas cannot be imported"):
        resolve_input("pandas", takes_anything, MIXED, "model 'x'")
    with pytest.raises(ConfigError, match=r"annotation of model .x..s first parameter"):
        resolve_input("auto", takes_pandas, NUMERIC, "model 'x'")


def test_frames_of_a_numeric_schema_carry_the_models_column_names():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert converter("numpy", ("b", "a"), NUMERIC) is None
    polars = converter("polars", ("b", "a"), NUMERIC)(x)
    assert polars.columns == ["b", "a"] and polars.rows() == [(1.0, 2.0), (3.0, 4.0)]
    arrow = converter("arrow", ("b", "a"), NUMERIC)(x)
    assert arrow.column_names == ["b", "a"] and arrow.column("a").to_pylist() == [2.0, 4.0]
    pandas = converter("pandas", ("b", "a"), NUMERIC)(x)
    assert list(pandas.columns) == ["b", "a"] and pandas["a"].tolist() == [2.0, 4.0]


def test_frames_of_a_mixed_schema_interleave_numbers_and_strings_in_model_order():
    order = ("plan", "b", "a")
    polars = converter("polars", order, MIXED)(ROWS)
    assert polars.schema == pl.Schema({"plan": pl.String, "b": pl.Float64, "a": pl.Float64})
    assert polars.rows() == [("pro", 2.0, 1.0), (None, 4.0, 3.0)]
    arrow = converter("arrow", order, MIXED)(ROWS)
    assert arrow.schema == pa.schema([("plan", pa.string()), ("b", pa.float64()), ("a", "f8")])
    assert arrow.to_pylist()[1] == {"plan": None, "b": 4.0, "a": 3.0}
    pandas = converter("pandas", order, MIXED)(ROWS)
    assert list(pandas.columns) == list(order)
    assert str(pandas["plan"].dtype) == "category" and pandas["plan"].isna().tolist() == [0, 1]
    assert pandas["b"].tolist() == [2.0, 4.0]


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("not a path", "is not an import path; expected 'package.module:name'"),
        ("mod:", "is not an import path"),
        ("no_such_package_xyz.scoring:predict", "no module named 'no_such_package_xyz'"),
        (f"{models.MODULE}:no_such_model", "has no attribute 'no_such_model'"),
        (f"{models.MODULE}:ScoreCard", "names the class ScoreCard; name a fitted instance"),
        (f"{models.MODULE}:NOT_A_MODEL", "is an object of type int, neither callable nor"),
        (f"{models.MODULE}:score_card.classes_", "neither callable nor with a predict"),
    ],
)
def test_an_unusable_import_path_is_a_config_error(path, words):
    with pytest.raises(ConfigError, match="DRIFTLAKE_MODEL") as info:
        import_model(path)
    assert words in str(info.value)


def test_a_module_that_raises_on_import_is_a_config_error(tmp_path, monkeypatch):
    (tmp_path / "broken_scoring.py").write_text("import no_such_dependency_xyz\n")
    (tmp_path / "failing_scoring.py").write_text("raise RuntimeError('no licence')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="importing 'broken_scoring' failed: No module named"):
        import_model("broken_scoring:predict")
    with pytest.raises(ConfigError, match="raised RuntimeError: no licence"):
        import_model("failing_scoring:predict")


def test_the_version_follows_the_modules_source(tmp_path, monkeypatch):
    module = tmp_path / "versioned_scoring.py"
    module.write_text("def predict(rows):\n    return rows[:, 0]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fn, first = import_model("versioned_scoring:predict")
    assert callable(fn) and import_model("versioned_scoring.predict")[1] != first
    assert import_model("versioned_scoring:predict")[1] == first
    module.write_text(textwrap.dedent("def predict(rows):\n    return rows[:, 1]\n"))
    sys.modules.pop("versioned_scoring")
    assert import_model("versioned_scoring:predict")[1] != first


def predictor(model, classes=None, kind="polars") -> Predictor:
    return Predictor(
        model,
        name="m",
        version="v",
        feature_names=("a", "plan", "b"),
        to_input=converter(kind, ("a", "plan", "b"), MIXED),
        classes=classes,
    )


def test_string_classes_land_as_their_index_with_the_last_class_probability():
    frame_rows = MixedRows(np.zeros((3, 2)), (("basic", "pro", "basic"),))
    out = predictor(models.score_card).predict(frame_rows)
    assert out.labels == ["churn", "stay", "churn"]
    np.testing.assert_array_equal(out.values, [0.0, 1.0, 0.0])
    np.testing.assert_allclose(out.score, [0.3, 0.8, 0.3])


def test_a_functions_string_labels_land_as_their_index_among_the_references_labels():
    p = predictor(lambda rows: ["no", "yes"], classes=np.array(["no", "yes"]))
    out = p.predict(ROWS)
    assert out.labels == ["no", "yes"] and out.values.tolist() == [0.0, 1.0] and out.score is None
    with pytest.raises(ModelError, match=r"labels \['maybe'\] that are not among its classes"):
        predictor(lambda rows: ["no", "maybe"], classes=np.array(["no", "yes"])).predict(ROWS)
    with pytest.raises(ModelError, match="not among its classes"):
        predictor(lambda rows: ["0", "1"], classes=np.array([0, 1])).predict(ROWS)
    with pytest.raises(ModelError, match="has no classes_ and the reference no label column"):
        predictor(lambda rows: ["no", "yes"]).predict(ROWS)


def test_numbers_land_as_they_are():
    out = predictor(lambda rows: rows["a"] * 2).predict(ROWS)  # a polars Series
    assert out.labels == [2.0, 6.0] and out.values.tolist() == [2.0, 6.0] and out.score is None
    out = predictor(lambda rows: [[1], [0]]).predict(ROWS)  # one column: one value per row
    assert out.labels == [1, 0] and out.values.dtype == np.float64


@pytest.mark.parametrize(
    ("output", "words"),
    [
        ([1], r"returned shape \(1,\) for 2 rows"),
        (np.zeros((2, 2)), r"returned shape \(2, 2\) for 2 rows"),
        (7, r"returned shape \(\) for 2 rows"),
        ([object(), object()], r"values of type \['object'\]"),
        ([None, 1], r"values of type \['NoneType'\]"),
        (np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[D]"), "dtype datetime64"),
    ],
    ids=["short", "two-columns", "scalar", "objects", "none", "dates"],
)
def test_malformed_output_is_a_model_error(output, words):
    with pytest.raises(ModelError, match=words):
        predictor(lambda rows: output).predict(ROWS)
