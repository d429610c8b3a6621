"""Real model servers with a mixed numeric+categorical reference and with any model: the
default mixed model, pickled Pipelines and boosted models, callables named by import path;
what lands, the 422s, the 500 of a failing model, and the models refused at start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import joblib
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from harness import REFERENCE, ROOT
from harness.servers import (
    ServerHandle,
    feature_frame,
    holdout_features,
    landing_frame,
    model_server,
    request_body,
    send_rows,
)
from ingest import ConfigError
from ingest.reference import load_reference
from serving import ServingSettings, create_app, train_default_model
from tests import models_for_serving as models
from tests.models_for_serving import CATEGORICAL, LABEL, MODULE, as_pandas, mixed_frame

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MODEL = "churn"
JSON = {"content-type": "application/json"}
COLUMNS = ["age", "tenure", "plan", "payment"]
# new rows of the same distribution, a category never seen in training, and nulls
HOLDOUT = pl.concat(
    [
        mixed_frame(60, seed=1).drop(LABEL),
        pl.DataFrame(
            {"age": [33.0, 51.5], "tenure": [2, 40], "plan": ["enterprise", "pro"]},
            schema={"age": pl.Float64, "tenure": pl.Int64, "plan": pl.String},
        ).with_columns(payment=pl.lit(None, pl.String)),
    ]
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    return models.write_mixed_reference(tmp_path_factory.mktemp("ref") / "reference.parquet")


def serve(warehouse: Path, reference: Path, replica: str, **settings):
    """A model server of the mixed reference (model ``churn``, label ``churned``)."""
    env = {"label": LABEL, "model_name": MODEL, "flush_interval": 600, **settings}
    return model_server(warehouse, replica=replica, reference=reference, **env)


def post(server: ServerHandle, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.url}/get-prediction", content=body, headers=JSON, timeout=30, trust_env=False
    )


def landed_files(warehouse: Path) -> list[pa.Table]:
    files = sorted((warehouse / "landing").glob(f"model={MODEL}/**/*.parquet"))
    return [pq.read_table(f) for f in files]


def landed(warehouse: Path, request_ids: list[str]) -> pl.DataFrame:
    """The landed rows of ``request_ids``, in that order (categorical columns as strings)."""
    frame = landing_frame(warehouse, MODEL).with_columns(pl.col(*CATEGORICAL).cast(pl.String))
    order = pl.DataFrame({"request_id": request_ids}).with_row_index("at")
    return order.join(frame, on="request_id", how="left").sort("at")


def assert_features_landed_exactly(rows: pl.DataFrame, sent: pl.DataFrame) -> None:
    for name in COLUMNS:
        expected = sent[name].cast(pl.Float64) if name in ("age", "tenure") else sent[name]
        assert rows[name].to_list() == expected.to_list(), name


# --- the default model of a mixed reference -------------------------------------------------


@pytest.fixture(scope="module")
def default_model(reference):
    return train_default_model(load_reference(reference, MODEL, label=LABEL))


def test_the_default_mixed_model_predicts_strings_and_lands_them_exactly(
    tmp_path, reference, default_model
):
    wh = tmp_path / "wh"
    with serve(wh, reference, "mixed-1") as server:
        sent = send_rows(server.url, HOLDOUT, batch_rows=16)
        # columns in another order, one row
        order = ["payment", "plan", "tenure", "age"]
        resp = post(server, request_body(order, HOLDOUT.head(1).select(order).rows()))
        assert resp.status_code == 200, resp.text
        assert resp.json()["prediction"] == sent.predictions[:1]
        m = server.metrics()
        assert m["driftlake_prediction_rows_total"] == HOLDOUT.height + 1
        assert server.stop() == 0
    logs = server.logs()
    assert "input=polars" in logs and "Traceback" not in logs
    assert f"event=fast_predict_enabled model={MODEL} kind=column-transformer+logistic" in logs

    assert sent.predictions == default_model.predict(HOLDOUT).tolist()
    assert all(type(p) is int for p in sent.predictions)
    proba = default_model.predict_proba(HOLDOUT)[:, -1]
    np.testing.assert_allclose(sent.probabilities, proba, rtol=1e-12, atol=0)

    rows = landed(wh, sent.request_ids)
    assert rows["request_id"].null_count() == 0 and rows.height == HOLDOUT.height
    assert_features_landed_exactly(rows, HOLDOUT)
    assert rows["prediction"].to_list() == [float(p) for p in sent.predictions]
    np.testing.assert_allclose(rows["score"].to_numpy(), proba, rtol=1e-12, atol=0)
    for table in landed_files(wh):
        for name in CATEGORICAL:  # dictionary-encoded in the landing files
            assert table.schema.field(name).type == pa.dictionary(pa.int32(), pa.string())
        assert table.schema.field("age").type == pa.float64()


# every new 422 kind of a mixed request: (row, column index in COLUMNS, type, message start)
WRONG_KINDS = {
    "number for a category": (
        [41.0, 3, 2, "card"],
        2,
        "string_type",
        "row 1, column 'plan': expected a string (categorical feature), got the number 2",
    ),
    "null where the reference has none": (
        [41.0, 3, None, "card"],
        2,
        "string_type",
        "row 1, column 'plan': expected a string (categorical feature), got null",
    ),
    "boolean for a category": (
        [41.0, 3, "pro", True],
        3,
        "string_type",
        "row 1, column 'payment': expected a string (categorical feature), got a boolean",
    ),
    "string for a number": (
        [41.0, "3", "pro", "card"],
        1,
        "float_type",
        "row 1, column 'tenure': expected a JSON number (numeric feature), got the string '3'",
    ),
    "category over the size limit": (
        [41.0, 3, "p" * 1025, "card"],
        2,
        "string_too_long",
        "row 1, column 'plan': the string is 1025 bytes (UTF-8)",
    ),
}


def test_values_of_the_wrong_kind_are_422_naming_row_column_and_kind(tmp_path, reference):
    good = [40.0, 12, "basic", None]  # null is fine in payment: the reference has nulls there
    wh = tmp_path / "wh"
    with serve(wh, reference, "kinds-1") as server:
        for case, (row, j, kind, words) in WRONG_KINDS.items():
            resp = post(server, request_body(COLUMNS, [good, row]))
            assert resp.status_code == 422, (case, resp.text)
            detail = resp.json()["detail"]
            assert len(detail) == 1, (case, detail)
            assert detail[0]["loc"] == ["body", "features", "data", 1, j], case
            assert detail[0]["type"] == kind, case
            assert detail[0]["msg"].startswith(words), (case, detail[0]["msg"])
        ok = post(server, request_body(COLUMNS, [good]))
        assert ok.status_code == 200, ok.text
        m = server.metrics()
        assert m['driftlake_http_requests_total{path="/get-prediction",status="422"}'] == len(
            WRONG_KINDS
        )
        assert server.stop() == 0
    # nothing of a rejected request lands
    assert landing_frame(wh, MODEL)["request_id"].to_list() == ok.json()["request_ids"]


# --- any model --------------------------------------------------------------------------------


def test_a_pipeline_fitted_on_pandas_with_string_labels(tmp_path, reference):
    train = pl.read_parquet(reference)
    labels = np.where(train[LABEL].to_numpy() == 1, "churn", "stay")
    columns = ColumnTransformer(
        [
            ("numbers", StandardScaler(), ["age", "tenure"]),
            ("categories", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL)),
        ]
    )
    pipeline = Pipeline([("columns", columns), ("model", LogisticRegression(max_iter=2000))])
    pipeline.fit(train.drop(LABEL).to_pandas(), labels)
    path = tmp_path / "pipeline.joblib"
    joblib.dump(pipeline, path)
    wh = tmp_path / "wh"
    # fed pandas: its encoder knows a missing payment as pandas' NaN, not as polars' null
    with serve(wh, reference, "pandas-1", model_path=path, model_input="pandas") as server:
        sent = send_rows(server.url, HOLDOUT, batch_rows=31)
        assert server.stop() == 0
    expected = pipeline.predict(HOLDOUT.to_pandas())
    assert sent.predictions == expected.tolist() and set(expected) == {"churn", "stay"}
    proba = pipeline.predict_proba(HOLDOUT.to_pandas())[:, -1]  # of "stay", the last class
    np.testing.assert_allclose(sent.probabilities, proba, rtol=1e-12, atol=0)
    rows = landed(wh, sent.request_ids)
    assert_features_landed_exactly(rows, HOLDOUT)
    # a string label lands as its index in classes_
    assert rows["prediction"].to_list() == [float(p == "stay") for p in expected]
    np.testing.assert_allclose(rows["score"].to_numpy(), proba, rtol=1e-12, atol=0)


def test_lightgbm_classifier_on_category_columns(tmp_path, reference):
    lightgbm = pytest.importorskip("lightgbm")
    train = pl.read_parquet(reference)
    model = lightgbm.LGBMClassifier(n_estimators=20, min_child_samples=5, verbose=-1)
    model.fit(as_pandas(train), train[LABEL].to_numpy())
    path = tmp_path / "lgbm.joblib"
    joblib.dump(model, path)
    wh = tmp_path / "wh"
    with serve(wh, reference, "lgbm-1", model_path=path, model_input="pandas") as server:
        sent = send_rows(server.url, HOLDOUT, batch_rows=20)
        assert server.stop() == 0
    assert "input=pandas" in server.logs()
    expected = model.predict(as_pandas(HOLDOUT))
    assert sent.predictions == expected.tolist()
    proba = model.predict_proba(as_pandas(HOLDOUT))[:, -1]
    np.testing.assert_allclose(sent.probabilities, proba, rtol=1e-12, atol=0)
    rows = landed(wh, sent.request_ids)
    assert_features_landed_exactly(rows, HOLDOUT)
    assert rows["prediction"].to_list() == expected.astype(float).tolist()
    np.testing.assert_allclose(rows["score"].to_numpy(), proba, rtol=1e-12, atol=0)


def test_regressors_land_their_value_and_a_null_score(tmp_path, reference):
    lightgbm = pytest.importorskip("lightgbm")
    train = pl.read_parquet(reference)
    target = train["tenure"].to_numpy() * 0.5 + train["age"].to_numpy()
    lgbm = lightgbm.LGBMRegressor(n_estimators=20, min_child_samples=5, verbose=-1)
    lgbm.fit(as_pandas(train).drop(columns=["tenure"]).assign(tenure=train["tenure"]), target)
    lgbm_path = tmp_path / "lgbm.joblib"
    joblib.dump(lgbm, lgbm_path)
    # a boosted model on the numeric breast-cancer reference, fed numpy arrays
    cancer = feature_frame()
    hgb = HistGradientBoostingRegressor(max_iter=20, random_state=0)
    hgb.fit(cancer.to_numpy(), pl.read_parquet(REFERENCE)["mean area"].to_numpy())
    hgb_path = tmp_path / "hgb.joblib"
    joblib.dump(hgb, hgb_path)
    cancer_rows = holdout_features().head(12)

    with (
        serve(
            tmp_path / "wh", reference, "lgbm-r", model_path=lgbm_path, model_input="pandas"
        ) as lgbm_server,
        model_server(tmp_path / "wh-hgb", replica="hgb-r", model_path=hgb_path) as hgb_server,
    ):
        sent = send_rows(lgbm_server.url, HOLDOUT, batch_rows=25)
        hgb_sent = send_rows(hgb_server.url, cancer_rows, batch_rows=5)
        assert lgbm_server.stop() == 0 and hgb_server.stop() == 0

    # the server feeds the model's own column order (tenure last), named
    expected = lgbm.predict(as_pandas(HOLDOUT)[list(lgbm.feature_names_in_)])
    np.testing.assert_allclose(sent.predictions, expected, rtol=1e-12, atol=0)
    assert sent.probabilities == []
    rows = landed(tmp_path / "wh", sent.request_ids)
    assert_features_landed_exactly(rows, HOLDOUT)
    np.testing.assert_allclose(rows["prediction"].to_numpy(), expected, rtol=1e-12, atol=0)
    assert rows["score"].null_count() == rows.height

    np.testing.assert_allclose(hgb_sent.predictions, hgb.predict(cancer_rows.to_numpy()))
    hgb_rows = landing_frame(tmp_path / "wh-hgb")
    assert hgb_rows.height == 12 and hgb_rows["score"].null_count() == 12


def test_callables_named_by_import_path(tmp_path, reference):
    # a plain function without annotations on the numeric reference (numpy), and one that
    # declares a polars frame on the mixed reference
    cancer_rows = holdout_features().head(10)
    with (
        model_server(
            tmp_path / "wh-plain", replica="plain-1", model=f"{MODULE}:tenure_years"
        ) as plain,
        serve(tmp_path / "wh", reference, "polars-1", model=f"{MODULE}:churn_rule") as rule,
    ):
        plain_sent = send_rows(plain.url, cancer_rows, batch_rows=5)
        sent = send_rows(rule.url, HOLDOUT, batch_rows=20)
        version = httpx.get(f"{rule.url}/healthz", trust_env=False).json()["model_version"]
        assert plain.stop() == 0 and rule.stop() == 0
    assert "input=numpy" in plain.logs() and "input=polars" in rule.logs()
    np.testing.assert_allclose(plain_sent.predictions, cancer_rows.to_numpy()[:, 0] / 12.0)
    assert landing_frame(tmp_path / "wh-plain")["score"].null_count() == 10

    expected = models.churn_rule(HOLDOUT).to_list()
    assert sent.predictions == expected and sent.probabilities == []
    rows = landed(tmp_path / "wh", sent.request_ids)
    assert_features_landed_exactly(rows, HOLDOUT)
    assert rows["prediction"].to_list() == [float(p) for p in expected]
    assert set(rows["model_version"]) == {version} and len(version) == 12


def test_a_model_failing_on_a_request_is_a_counted_500_and_the_server_keeps_serving(
    tmp_path, reference
):
    wh = tmp_path / "wh"
    with serve(wh, reference, "fails-1", model=f"{MODULE}:fails_on_old_customers") as server:
        bad = post(server, request_body(COLUMNS, [[40.0, 5000, "pro", "card"]]))
        assert bad.status_code == 500, bad.text
        assert bad.headers["content-type"] == "application/json"
        detail = bad.json()["detail"]
        assert detail == [
            {
                "loc": ["model"],
                "msg": "the model failed on these rows (RuntimeError); nothing was captured, "
                "and the replica's log has the error (event=model_error)",
                "type": "model_error",
            }
        ]
        good = post(server, request_body(COLUMNS, [[40.0, 5, "pro", "card"]]))
        assert good.status_code == 200, good.text
        m = server.metrics()
        assert m["driftlake_model_errors_total"] == 1
        assert m['driftlake_http_requests_total{path="/get-prediction",status="500"}'] == 1
        assert m["driftlake_prediction_rows_total"] == 1
        assert server.stop() == 0
    logs = server.logs()
    assert "event=model_error" in logs and "tenure table overflow" in logs
    assert "Traceback" not in logs
    assert landing_frame(wh, MODEL)["request_id"].to_list() == good.json()["request_ids"]


# --- models refused at start --------------------------------------------------------------------


def test_unusable_models_are_refused_at_start_with_one_line_and_status_2(tmp_path, reference):
    # a pandas that cannot be imported, as on a host without it (pandas is a dev dependency)
    hidden = tmp_path / "hidden"
    (hidden / "pandas").mkdir(parents=True)
    (hidden / "pandas" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'pandas'\", name='pandas')\n"
    )
    mixed = ["--reference", str(reference), "--label", LABEL, "--model-name", MODEL]
    cases = {
        "model and model path": (
            ["--model", f"{MODULE}:churn_rule", "--model-path", str(reference)],
            {},
            "DRIFTLAKE_MODEL (--model) 'tests.models_for_serving:churn_rule' and "
            "DRIFTLAKE_MODEL_PATH (--model-path)",
        ),
        "no such module": (
            ["--model", "no_such_pkg_xyz.scoring:predict"],
            {},
            "no module named 'no_such_pkg_xyz'",
        ),
        "raises on the smoke test": (
            [*mixed, "--model", f"{MODULE}:always_fails"],
            {},
            "model 'tests.models_for_serving:always_fails' (model 'churn') cannot predict two "
            "reference rows given as a polars DataFrame: ValueError: this model cannot predict",
        ),
        "pandas missing": (
            [*mixed, "--model-input", "pandas"],
            {"PYTHONPATH": str(hidden)},
            "takes a pandas DataFrame (DRIFTLAKE_MODEL_INPUT=pandas) but pandas cannot be imported",
        ),
    }
    base = [sys.executable, "-m", "serving", "--warehouse", str(tmp_path / "wh")]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLAKE_")}
    procs = {
        case: subprocess.Popen(
            [*base, *args],
            cwd=ROOT,
            env={**clean, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for case, (args, env, _) in cases.items()
    }
    for case, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        lines = err.strip().splitlines()
        assert proc.returncode == 2, (case, err[-3000:])
        assert "Traceback" not in err, case
        assert len(lines) == 1 and lines[0].startswith("python -m serving: error: "), lines
        assert cases[case][2] in lines[0], (case, lines[0])
    assert not (tmp_path / "wh" / "landing").exists()


# the same refusals in-process (create_app raises what `python -m serving` prints, above)
REFUSED = {
    "no such attribute": (
        {"model": f"{MODULE}:nothing_here"},
        "'tests.models_for_serving' has no attribute 'nothing_here'",
    ),
    "a class": ({"model": f"{MODULE}:ScoreCard"}, "names the class ScoreCard"),
    "not callable": ({"model": f"{MODULE}:NOT_A_MODEL"}, "neither callable nor with a predict"),
    "numpy for categories": (
        {"model_input": "numpy"},
        r"the default model takes a numpy array (DRIFTLAKE_MODEL_INPUT=numpy), which cannot hold "
        "the categorical (string) features ['plan', 'payment']",
    ),
    "annotated numpy for categories": (
        {"model": f"{MODULE}:takes_numpy"},
        "takes a numpy array (the annotation of model 'tests.models_for_serving:takes_numpy'",
    ),
    "one output short": (
        {"model": f"{MODULE}:one_short"},
        "the model returned shape (1,) for 2 rows; expected one label or number per row",
    ),
    "two outputs per row": (
        {"model": f"{MODULE}:two_columns"},
        "the model returned shape (2, 2) for 2 rows",
    ),
    "labels the reference does not have": (
        {"model": f"{MODULE}:yes_no"},
        "that are not among its classes [0, 1]",
    ),
    "a polars-only model given arrow": (
        {"model": f"{MODULE}:churn_rule", "model_input": "arrow"},
        "given as a pyarrow Table: AssertionError: <class 'pyarrow.lib.Table'>; is "
        "DRIFTLAKE_MODEL_INPUT (--model-input) the frame type it takes?",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_unusable_models_are_config_errors(tmp_path, reference, case):
    settings, words = REFUSED[case]
    config = ServingSettings(
        reference_path=reference,
        label=LABEL,
        model_name=MODEL,
        warehouse=str(tmp_path / "wh"),
        replica="refused",
        **settings,
    )
    with pytest.raises(ConfigError) as info:
        create_app(config)
    assert words in str(info.value), str(info.value)
