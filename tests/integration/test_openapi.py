"""The model server's OpenAPI document describes the API it really serves; schemathesis,
run against a live server, finds no server error and no answer outside the document."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from harness.servers import ServerHandle, feature_frame, model_server, request_body
from tests import models_for_serving as models
from tests.models_for_serving import write_mixed_reference

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MAX_ROWS = 5  # small, so generated bodies stay small and the run fast
COLUMNS = feature_frame().columns
PREDICTION_PATHS = ("/get-prediction", "/model/get-prediction")
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> ServerHandle:
    wh = tmp_path_factory.mktemp("openapi") / "wh"
    with model_server(wh, max_batch_rows=MAX_ROWS, flush_interval=0.2) as handle:
        yield handle


@pytest.fixture(scope="module")
def document(server) -> dict:
    resp = httpx.get(f"{server.url}/openapi.json", timeout=10, trust_env=False)
    assert resp.status_code == 200
    return resp.json()


def post(server: ServerHandle, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.url}/get-prediction", content=body, headers=JSON, timeout=30, trust_env=False
    )


@pytest.mark.parametrize("path", PREDICTION_PATHS)
def test_prediction_body_and_answers_are_documented(document, path):
    operation = document["paths"][path]["post"]
    media = operation["requestBody"]["content"]["application/json"]
    features = media["schema"]["properties"]["features"]
    assert features["required"] == ["columns", "data"]
    assert sorted(features["properties"]["columns"]["items"]["enum"]) == sorted(COLUMNS)
    data = features["properties"]["data"]
    assert data["maxItems"] == MAX_ROWS and data["items"]["maxItems"] == len(COLUMNS)
    assert media["example"]["features"]["columns"] == COLUMNS
    assert set(operation["responses"]) == {"200", "408", "413", "422", "500"}
    for status in ("408", "413", "422", "500"):
        schema = operation["responses"][status]["content"]["application/json"]["schema"]
        assert schema["required"] == ["detail"]


def test_metrics_is_documented_as_prometheus_text(server, document):
    content = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    served = httpx.get(f"{server.url}/metrics", timeout=10, trust_env=False)
    assert list(content) == [served.headers["content-type"]]
    assert served.headers["content-type"].startswith("text/plain; version=")


def test_the_documented_example_is_accepted(server, document):
    media = document["paths"]["/get-prediction"]["post"]["requestBody"]["content"]
    resp = post(server, orjson.dumps(media["application/json"]["example"]))
    assert resp.status_code == 200, resp.text


def test_the_documented_413_and_422_are_what_the_server_answers(server):
    too_many = post(server, request_body(COLUMNS, [[1.0] * len(COLUMNS)] * (MAX_ROWS + 1)))
    assert too_many.status_code == 422
    assert too_many.json()["detail"][0]["loc"] == ["body", "features", "data"]
    too_large = post(server, b" " * (4 << 20))
    assert too_large.status_code == 413
    assert too_large.json()["detail"][0]["type"] == "too_large"


def test_values_the_model_overflows_on_get_422_not_a_null_probability(server):
    # found by schemathesis: finite values near the float64 limit overflowed the model's
    # logit to NaN, answered 200 with a null probability (not a number) and landed as NaN
    huge = [1.7976931348623157e308] * len(COLUMNS)
    resp = post(server, request_body(COLUMNS, [[1.0] * len(COLUMNS), huge]))
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert [d["loc"] for d in detail] == [["body", "features", "data", 1]]
    assert "not a finite number" in detail[0]["msg"]


def schemathesis(url: str, cwd: Path, max_examples: int) -> subprocess.CompletedProcess:
    """Run schemathesis against ``url``'s OpenAPI document."""
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    # every check but positive_data_acceptance: a schema-valid row can still be one the model
    # cannot answer (422 model_output), or (with categorical features) hold a string in a
    # numeric column, which a schema of columns in any order has no way to express
    checks = [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "missing_required_header",
        "unsupported_method",
    ]
    cmd = [
        cli,
        "run",
        f"{url}/openapi.json",
        "--checks",
        ",".join(checks),
        "--max-examples",
        str(max_examples),
        "--seed",
        "23",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--phases",
        "examples,coverage,fuzzing",
        "--no-color",
    ]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=150, check=False)


@pytest.mark.timeout(180)
def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(server, tmp_path: Path):
    proc = schemathesis(server.url, tmp_path, 100)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "generated" in proc.stdout  # it did run cases
    logs = server.logs()
    assert "Traceback" not in logs and "Exception in ASGI" not in logs


@pytest.fixture(scope="module")
def mixed_server(tmp_path_factory) -> ServerHandle:
    root = tmp_path_factory.mktemp("openapi-mixed")
    reference = write_mixed_reference(root / "reference.parquet")
    env = {"label": models.LABEL, "model_name": "churn", "flush_interval": 0.2}
    with model_server(root / "wh", reference=reference, max_batch_rows=MAX_ROWS, **env) as handle:
        yield handle


def test_a_mixed_schemas_document_says_which_columns_take_strings(mixed_server):
    document = httpx.get(f"{mixed_server.url}/openapi.json", timeout=10, trust_env=False).json()
    media = document["paths"]["/get-prediction"]["post"]["requestBody"]["content"]
    schema = media["application/json"]["schema"]["properties"]["features"]["properties"]
    data = schema["data"]
    assert data["x-categorical-columns"] == ["plan", "payment"]
    assert data["x-nullable-columns"] == ["payment"]  # the reference has nulls there only
    assert data["items"]["items"] == {
        "anyOf": [{"type": "number"}, {"type": "string"}, {"type": "null"}]
    }
    assert "a string for the categorical columns 'plan', 'payment'" in data["description"]
    example = media["application/json"]["example"]
    assert example["features"]["data"][0] == [0.0, 0.0, "basic", "bank"]  # commonest values
    resp = httpx.post(
        f"{mixed_server.url}/get-prediction",
        content=orjson.dumps(example),
        headers=JSON,
        timeout=30,
        trust_env=False,
    )
    assert resp.status_code == 200, resp.text


@pytest.mark.timeout(180)
def test_schemathesis_on_a_mixed_schema(mixed_server, tmp_path: Path):
    proc = schemathesis(mixed_server.url, tmp_path, 50)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "generated" in proc.stdout
    logs = mixed_server.logs()
    assert "Traceback" not in logs and "Exception in ASGI" not in logs
