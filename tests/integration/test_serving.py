"""A real model server: predictions, 422s, metrics, and every accepted row landed on SIGTERM."""

from __future__ import annotations

import hashlib
import pickle
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import orjson
import polars as pl
import pytest
from pydantic import ValidationError
from sklearn.tree import DecisionTreeRegressor

from harness import REFERENCE, ROOT
from harness.servers import (
    ServerHandle,
    feature_frame,
    holdout_features,
    landing_frame,
    model_server,
    request_body,
    send_rows,
    wait_landed,
)
from ingest import ConfigError
from ingest.reference import load_reference
from serving import ServingSettings, create_app, train_default_model

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

FEATURES = feature_frame()
COLUMNS = FEATURES.columns
HOLDOUT = holdout_features()
ID = re.compile(r"^[0-9a-f]{32}-\d+$")
JSON = {"content-type": "application/json"}
METRIC_NAMES = (
    "driftlake_http_requests_total",
    "driftlake_http_request_duration_seconds",
    "driftlake_prediction_rows_total",
    "driftlake_capture_rows_total",
    "driftlake_capture_flushed_rows_total",
    "driftlake_capture_dropped_rows_total",
    "driftlake_capture_flushes_failed_total",
    "driftlake_capture_buffer_rows",
    "driftlake_capture_oldest_row_age_seconds",
    "driftlake_capture_last_flush_duration_seconds",
    "driftlake_model_info",
)


def _row(i: int = 0) -> list[float]:
    return list(HOLDOUT.row(i))


def _with_first_value(token: bytes) -> bytes:
    """A one-row body whose first value is the raw JSON ``token`` (e.g. NaN, not JSON)."""
    rest = b", ".join(orjson.dumps(v) for v in _row()[1:])
    columns = orjson.dumps(COLUMNS)
    return b'{"features": {"columns": ' + columns + b', "data": [[' + token + b", " + rest + b"]]}}"


# each malformed kind: (body, loc of the first error, words its msg must hold)
MALFORMED = {
    "invalid_json": (b'{"features": {"columns": [', ["body"], "not valid JSON"),
    "not_an_object": (b'"hello"', ["body"], "must be a JSON object"),
    "no_features": (b'{"columns": [], "data": []}', ["body", "features"], "is required"),
    "missing_column": (
        request_body(COLUMNS[1:], [_row()[1:]]),
        ["body", "features", "columns"],
        "missing column 'mean radius'; expected the model's 30 feature columns",
    ),
    "unknown_column": (
        request_body([*COLUMNS, "foo"], [[*_row(), 1.0]]),
        ["body", "features", "columns", 30],
        "unknown column 'foo'; expected the model's 30 feature columns",
    ),
    "duplicate_column": (
        request_body([*COLUMNS, COLUMNS[0]], [[*_row(), 1.0]]),
        ["body", "features", "columns", 30],
        "duplicate column 'mean radius'",
    ),
    "string_number": (
        request_body(COLUMNS, [_row(), [*_row()[:2], "1.0", *_row()[3:]]]),
        ["body", "features", "data", 1, 2],
        "row 1, column 'mean perimeter': expected a JSON number, got the string '1.0'",
    ),
    "null_value": (
        request_body(COLUMNS, [[None, *_row()[1:]]]),
        ["body", "features", "data", 0, 0],
        "expected a JSON number, got null",
    ),
    "nan": (
        _with_first_value(b"NaN"),
        ["body", "features", "data", 0, 0],
        "row 0, column 'mean radius': value is not a finite number",
    ),
    "infinity": (
        _with_first_value(b"-Infinity"),
        ["body", "features", "data", 0, 0],
        "row 0, column 'mean radius': value is not a finite number",
    ),
    "boolean": (
        _with_first_value(b"true"),
        ["body", "features", "data", 0, 0],
        "row 0, column 'mean radius': expected a JSON number, got a boolean",
    ),
    "ragged_row": (
        request_body(COLUMNS, [_row(), _row()[:-1]]),
        ["body", "features", "data", 1],
        "row 1 has 29 values but 30 columns were given",
    ),
    "empty_data": (
        request_body(COLUMNS, []),
        ["body", "features", "data"],
        "data has no rows",
    ),
    "too_many_rows": (
        request_body(COLUMNS, [_row()] * 1001),
        ["body", "features", "data"],
        "data has 1001 rows but at most 1000 are accepted per request",
    ),
}


@pytest.fixture(scope="module")
def model():
    """The default model, trained here exactly as the server trains it."""
    return train_default_model(load_reference(REFERENCE, "breast_cancer"))


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> ServerHandle:
    with model_server(tmp_path_factory.mktemp("serving") / "wh", replica="shared-1") as handle:
        yield handle


def post(server: ServerHandle, body: bytes, path: str = "/get-prediction") -> httpx.Response:
    return httpx.post(f"{server.url}{path}", content=body, headers=JSON, timeout=30)


def assert_matches_model(answer: dict, model, x: np.ndarray) -> None:
    assert answer["prediction"] == model.predict(x).tolist()
    assert all(type(p) is int for p in answer["prediction"])
    np.testing.assert_allclose(
        answer["probability"], model.predict_proba(x)[:, -1], rtol=1e-9, atol=1e-15
    )
    ids = answer["request_ids"]
    assert len(ids) == len(set(ids)) == x.shape[0] and all(ID.match(i) for i in ids)


@pytest.mark.parametrize("rows", [1, 32])
def test_predictions_equal_the_models(server, model, rows):
    batch = HOLDOUT.head(rows)
    resp = post(server, request_body(COLUMNS, batch.rows()))
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert set(answer) == {"prediction", "probability", "model_version", "request_ids"}
    assert_matches_model(answer, model, batch.to_numpy())
    health = httpx.get(f"{server.url}/healthz").json()
    assert answer["model_version"] == health["model_version"]


def test_columns_in_any_order(server, model):
    batch = HOLDOUT.head(8)
    shuffled = list(np.random.default_rng(7).permutation(COLUMNS))
    resp = post(server, request_body(shuffled, batch.select(shuffled).rows()))
    assert resp.status_code == 200, resp.text
    assert_matches_model(resp.json(), model, batch.to_numpy())


def test_original_design_path(server, model):
    resp = post(server, request_body(COLUMNS, [_row(3)]), path="/model/get-prediction")
    assert resp.status_code == 200, resp.text
    assert_matches_model(resp.json(), model, HOLDOUT.slice(3, 1).to_numpy())


def test_healthz(server):
    health = httpx.get(f"{server.url}/healthz").json()
    assert health["status"] == "ok" and health["model"] == "breast_cancer"
    assert health["replica"] == "shared-1" and re.match(r"^[0-9a-f]{12}$", health["model_version"])
    assert "event_loop=asyncio" in server.logs()  # the default: requests served in order


def test_uvloop_serves_and_lands_the_same(tmp_path, model):
    with model_server(tmp_path / "wh", event_loop="uvloop") as handle:
        assert "event_loop=uvloop" in handle.logs()
        batch = HOLDOUT.head(4)
        resp = post(handle, request_body(COLUMNS, batch.rows()))
        assert resp.status_code == 200, resp.text
        assert_matches_model(resp.json(), model, batch.to_numpy())
        wait_landed(handle.warehouse, resp.json()["request_ids"])


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_request_is_422_and_server_keeps_serving(server, kind):
    body, loc, words = MALFORMED[kind]
    resp = post(server, body)
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert detail[0]["loc"] == loc, detail
    assert words in detail[0]["msg"], detail
    assert {"loc", "msg", "type"} <= set(detail[0])
    assert post(server, request_body(COLUMNS, [_row()])).status_code == 200


def test_oversized_body_is_413(server):
    resp = post(server, b" " * (5 << 20))
    assert resp.status_code == 413 and "bytes" in resp.json()["detail"][0]["msg"]
    assert post(server, request_body(COLUMNS, [_row()])).status_code == 200


def test_rows_land_while_the_server_runs(server):
    sent = send_rows(server.url, HOLDOUT.head(10), batch_rows=5)
    wait_landed(server.warehouse, sent.request_ids)


def test_metrics_names(server):
    text = httpx.get(f"{server.url}/metrics").text
    for name in METRIC_NAMES:
        assert re.search(rf"^{name}(_bucket|_count)?[{{ ]", text, re.M), name
    assert 'driftlake_http_requests_total{path="other",status="404"}' not in text
    httpx.get(f"{server.url}/no/such/path/123")
    text = httpx.get(f"{server.url}/metrics").text
    assert 'driftlake_http_requests_total{path="other",status="404"} 1.0' in text


def test_sigterm_lands_exactly_the_accepted_rows(tmp_path, model):
    wh = tmp_path / "wh"
    # nothing is published before shutdown: SIGTERM alone must land every buffered row
    with model_server(wh, replica="term-1", flush_interval=600, flush_rows=10**6) as server:
        accepted: dict[str, list[float]] = {}
        single = send_rows(server.url, HOLDOUT.head(20), batch_rows=1)
        batches = send_rows(server.url, HOLDOUT.slice(20, 96), batch_rows=32)
        alt = send_rows(server.url, HOLDOUT.slice(116, 4), path="/model/get-prediction")
        for sent, frame in ((single, HOLDOUT.head(20)), (batches, HOLDOUT.slice(20, 96))):
            accepted.update(zip(sent.request_ids, frame.rows(), strict=True))
        accepted.update(zip(alt.request_ids, HOLDOUT.slice(116, 4).rows(), strict=True))
        shuffled = COLUMNS[::-1]
        resp = post(server, request_body(shuffled, HOLDOUT.slice(120, 3).select(shuffled).rows()))
        accepted.update(zip(resp.json()["request_ids"], HOLDOUT.slice(120, 3).rows(), strict=True))
        for body, _, _ in MALFORMED.values():
            assert post(server, body).status_code == 422
        n = len(accepted)
        assert n == 20 + 96 + 4 + 3

        m = server.metrics()
        assert m["driftlake_capture_rows_total"] == n
        assert m["driftlake_prediction_rows_total"] == n
        assert m["driftlake_capture_buffer_rows"] == n
        assert m["driftlake_capture_flushed_rows_total"] == 0
        assert m["driftlake_capture_dropped_rows_total"] == 0
        assert m["driftlake_capture_flushes_failed_total"] == 0
        assert 0 < m["driftlake_capture_oldest_row_age_seconds"] < 600
        ok = m['driftlake_http_requests_total{path="/get-prediction",status="200"}']
        assert ok == 20 + 3 + 1
        assert m['driftlake_http_requests_total{path="/model/get-prediction",status="200"}'] == 4
        bad = m['driftlake_http_requests_total{path="/get-prediction",status="422"}']
        assert bad == len(MALFORMED)
        lat = 'driftlake_http_request_duration_seconds_count{path="/get-prediction"}'
        assert m[lat] == ok + bad
        info = 'driftlake_model_info{model="breast_cancer",model_version="%s",replica="term-1"}'
        version = httpx.get(f"{server.url}/healthz").json()["model_version"]
        assert m[info % version] == 1
        assert landing_frame(wh).is_empty()

        assert server.stop() == 0
    assert "event=capture_closed" in server.logs()

    landed = landing_frame(wh)
    assert landed.height == n
    assert sorted(landed["request_id"].to_list()) == sorted(accepted)
    assert set(landed["replica"]) == {"term-1"} and set(landed["model_version"]) == {version}
    assert set(landed["model"]) == {"breast_cancer"}
    assert landed["ts"].dtype == pl.Datetime("us", "UTC")
    # every landed feature value is the value that was sent, whatever the column order
    by_id = landed.sort("request_id")
    sent = np.array([accepted[i] for i in by_id["request_id"]])
    np.testing.assert_array_equal(by_id.select(COLUMNS).to_numpy(), sent)
    np.testing.assert_array_equal(by_id["prediction"].to_numpy(), model.predict(sent))
    np.testing.assert_allclose(by_id["score"].to_numpy(), model.predict_proba(sent)[:, -1])


def test_a_burst_the_moment_the_server_answers_is_captured_whole(tmp_path):
    # a replica put behind the load balancer as soon as /healthz answers gets its share of
    # the traffic at once: its flusher must already be taking rows out of the ring, not
    # still importing pyarrow (92,000 of these 160,000 rows were dropped so), and the ring
    # must hold what arrives during its first, slow flush (a 50,000-row ring dropped 40,000)
    wh = tmp_path / "wh"
    rows = HOLDOUT.sample(1000, with_replacement=True, seed=0)
    burst = pl.concat([rows] * 40)  # each client: 40 requests of the same 1,000 rows
    with model_server(wh, replica="burst-1") as server:
        with ThreadPoolExecutor(4) as pool:
            clients = [pool.submit(send_rows, server.url, burst, batch_rows=1000) for _ in "abcd"]
            sent = [i for c in clients for i in c.result().request_ids]
        m = server.metrics()
        assert m["driftlake_capture_dropped_rows_total"] == 0, server.logs()[-2000:]
        assert server.stop() == 0
    assert len(sent) == 160_000
    landed = landing_frame(wh)["request_id"]
    assert landed.len() == landed.n_unique() == len(sent)
    assert set(landed) == set(sent)


def test_model_path_serves_any_estimator(tmp_path):
    # fitted on a frame (so it has feature names) in another column order than the reference
    order = COLUMNS[::-1]
    x = FEATURES.select(order)
    target = pl.read_parquet(REFERENCE)["mean area"].to_numpy() * 0.5
    estimator = DecisionTreeRegressor(max_depth=4, random_state=0).fit(x, target)
    path = tmp_path / "tree.pkl"
    path.write_bytes(pickle.dumps(estimator))
    version = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    with model_server(tmp_path / "wh", replica="tree-1", model_path=path) as server:
        resp = post(server, request_body(COLUMNS, HOLDOUT.head(5).rows()))
        assert resp.status_code == 200, resp.text
        answer = resp.json()
        assert "probability" not in answer and answer["model_version"] == version
        expected = estimator.predict(HOLDOUT.head(5).select(order))
        np.testing.assert_allclose(answer["prediction"], expected)
        server.stop()
    assert "valid feature names" not in server.logs()
    landed = landing_frame(tmp_path / "wh")
    assert landed.height == 5 and landed["score"].null_count() == 5


BAD_SETTINGS = {
    "missing reference": (["--reference", "/no/such/reference.parquet"], "reference file"),
    "zero flush rows": (["--flush-rows", "0"], "flush_rows"),
    "unknown event loop": (["--event-loop", "tornado"], "event_loop"),
}


def test_bad_settings_exit_2_with_one_line(tmp_path):
    base = [sys.executable, "-m", "serving", "--warehouse", str(tmp_path / "wh")]
    # both at once: each process spends its time importing, not failing
    procs = {
        case: subprocess.Popen(
            [*base, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for case, (args, _) in BAD_SETTINGS.items()
    }
    for case, proc in procs.items():
        _, err = proc.communicate(timeout=60)
        lines = err.strip().splitlines()
        assert proc.returncode == 2, (case, err)
        assert "Traceback" not in err, case
        assert len(lines) == 1 and lines[0].startswith("python -m serving: error: "), lines
        assert BAD_SETTINGS[case][1] in lines[0], lines


def test_unusable_replica_name_or_model_file_is_refused(tmp_path):
    with pytest.raises(ValidationError, match="replica name 'bad/name' is not usable"):
        ServingSettings(replica="bad/name")
    settings = ServingSettings(
        reference_path=REFERENCE, warehouse=str(tmp_path / "wh"), model_path=REFERENCE
    )
    with pytest.raises(ConfigError, match=r"cannot load model file .*reference\.parquet"):
        create_app(settings)
