"""The ASGI capture middleware on a real FastAPI app: what it captures and the ids it
answers with; what it passes through untouched (and counts); its monitor follows the app."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import polars as pl
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel

from driftlake import REQUEST_IDS_HEADER, CaptureMiddleware, CaptureRoute, Monitor
from harness.procs import free_port, wait_until
from ingest import Warehouse
from ingest.capture import process_writer_supported
from ingest.reader import scan_landing

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FEATURES = {"age": "numeric", "plan": "categorical"}


class Customer(BaseModel):
    age: float
    plan: str


def user_app(monitor: Monitor | None, **options) -> FastAPI:
    """A user's app: its own schemas and routes; capture is the middleware alone (none
    without a monitor)."""
    app = FastAPI()

    @app.post("/score")
    def score(customer: Customer) -> dict:
        return {"churn": int(customer.age > 40), "probability": customer.age / 100}

    @app.post("/score-many")
    async def score_many(body: dict) -> dict:
        ages = [c["age"] for c in body["customers"]]
        return {"labels": [int(a > 40) for a in ages], "p": [a / 100 for a in ages]}

    @app.post("/text")
    async def text(customer: Customer) -> PlainTextResponse:
        return PlainTextResponse("1")

    @app.post("/stream")
    async def stream(customer: Customer) -> StreamingResponse:
        return StreamingResponse(iter([b'{"churn": ', b"1}"]), media_type="application/json")

    @app.post("/big")
    def big(customer: Customer) -> dict:
        return {"churn": 1, "padding": "x" * 1000}

    @app.post("/not-captured")
    def other(customer: Customer) -> dict:
        return {"churn": 1}

    routes = [
        CaptureRoute("/score", prediction="churn", score="probability"),
        CaptureRoute(
            "/score-many",
            features="customers",
            prediction=lambda r: r["labels"],
            score=lambda r: r["p"],
        ),
        CaptureRoute("/text", prediction="churn"),
        CaptureRoute("/stream", prediction="churn"),
        CaptureRoute("/big", prediction="churn"),
        CaptureRoute("/bad-extract", prediction=lambda r: r["no such key"]),
    ]

    @app.post("/bad-extract")
    def bad(customer: Customer) -> dict:
        return {"churn": 1}

    if monitor is not None:
        app.add_middleware(CaptureMiddleware, monitor=monitor, routes=routes, **options)
    return app


@contextmanager
def served(app: FastAPI) -> Iterator[httpx.Client]:
    """``app`` under a real uvicorn on a loopback port (a thread of this process), with its
    lifespan; a client of it. Leaving the block shuts the app down, lifespan included."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=60)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(60)
    assert not thread.is_alive()


def landed(wh) -> pl.DataFrame:
    return scan_landing(Warehouse(str(wh)), "mw").collect()


def new_monitor(wh, writer="thread") -> Monitor:
    return Monitor("mw", wh, features=FEATURES, writer=writer, flush_rows=10**6, flush_interval=600)


WRITERS = [
    pytest.param(
        "process",
        marks=pytest.mark.skipif(not process_writer_supported(), reason="needs x86-64 Linux"),
    ),
    "thread",
]


@pytest.mark.parametrize("writer", WRITERS)
def test_captures_the_routes_it_is_told_and_answers_their_ids(tmp_path, writer):
    monitor = new_monitor(tmp_path, writer)
    app = user_app(monitor)
    with served(app) as client:  # the app's lifespan starts the monitor
        one = client.post("/score", json={"age": 52, "plan": "pro", "ignored": 1})
        assert one.json() == {"churn": 1, "probability": 0.52}
        many = client.post(
            "/score-many", json={"customers": [{"age": a, "plan": "basic"} for a in (20, 60)]}
        )
        big = client.post(
            "/score-many", json={"customers": [{"age": a, "plan": "x"} for a in range(100)]}
        )
        other = client.post("/not-captured", json={"age": 1, "plan": "a"})
        invalid = client.post("/score", json={"age": "old", "plan": "a"})
        assert landed(tmp_path).height == 0  # nothing published before shutdown
    # the app shut down: the monitor closed, every captured row published
    frame = landed(tmp_path).sort("ts", "request_id")
    ids_one = one.headers[REQUEST_IDS_HEADER].split(",")
    ids_many = many.headers[REQUEST_IDS_HEADER].split(",")
    first, last = big.headers[REQUEST_IDS_HEADER].split("..")
    prefix = first.rsplit("-", 1)[0]
    assert (first, last) == (f"{prefix}-0", f"{prefix}-99")
    assert REQUEST_IDS_HEADER not in other.headers and REQUEST_IDS_HEADER not in invalid.headers
    assert invalid.status_code == 422
    expected = [*ids_one, *ids_many, *(f"{prefix}-{i}" for i in range(100))]
    assert sorted(frame["request_id"]) == sorted(expected)
    rows = {r["request_id"]: r for r in frame.iter_rows(named=True)}
    assert {k: rows[ids_one[0]][k] for k in ("age", "plan", "prediction", "score")} == {
        "age": 52.0,
        "plan": "pro",
        "prediction": 1.0,
        "score": 0.52,
    }
    assert [(rows[i]["age"], rows[i]["prediction"]) for i in ids_many] == [(20.0, 0.0), (60.0, 1.0)]
    assert monitor.stats().uncaptured == {}


def test_what_cannot_be_captured_passes_through_unchanged_and_is_counted(tmp_path, caplog):
    monitor = new_monitor(tmp_path)
    caplog.set_level(logging.WARNING, "driftlake.ingest.capture.monitor")
    with served(user_app(None)) as plain, served(user_app(monitor, max_body_bytes=300)) as captured:
        customer = {"age": 30, "plan": "basic"}
        crowd = {"customers": [customer] * 50}  # over 300 bytes
        for path, body in [
            ("/text", customer),
            ("/text", customer),
            ("/stream", customer),
            ("/bad-extract", customer),
            ("/bad-extract", customer),
            ("/score-many", crowd),
            ("/big", customer),
            ("/score", {"age": 30, "plan": 5}),  # the app's 422: not the middleware's
        ]:
            want, got = plain.post(path, json=body), captured.post(path, json=body)
            assert (got.status_code, got.content) == (want.status_code, want.content)
            assert REQUEST_IDS_HEADER not in got.headers
        ok = captured.post("/score", json=customer)
        assert REQUEST_IDS_HEADER in ok.headers
    assert monitor.stats().uncaptured == {
        "not_json": 2,
        "streaming": 1,
        "extract": 2,
        "request_too_large": 1,
        "response_too_large": 1,
    }
    # each reason logged once, however often it happened
    skipped = [r.getMessage() for r in caplog.records if "capture_skipped" in r.getMessage()]
    assert len(skipped) == 5
    assert "reason=extract" in " ".join(skipped) and "KeyError" in " ".join(skipped)
    assert landed(tmp_path).height == 1


def test_rows_that_do_not_fit_the_schema_are_counted_not_failed(tmp_path):
    monitor = Monitor(
        "mw", tmp_path, features={"age": "numeric", "tier": "categorical"}, writer="thread"
    )
    with served(user_app(monitor)) as client:
        response = client.post("/score", json={"age": 30, "plan": "basic"})
        assert response.status_code == 200 and REQUEST_IDS_HEADER not in response.headers
    assert monitor.stats().uncaptured == {"schema": 1}


def test_without_a_started_monitor_requests_are_served_and_counted(tmp_path):
    monitor = new_monitor(tmp_path)
    app = user_app(monitor, manage_lifespan=False)
    with served(app) as client:
        assert client.post("/score", json={"age": 30, "plan": "a"}).status_code == 200
    assert monitor.stats().uncaptured == {"not_started": 1}


def test_the_monitors_own_lifespan_for_an_app_without_the_middleware(tmp_path):
    monitor = new_monitor(tmp_path)
    app = FastAPI(lifespan=monitor.lifespan)

    @app.post("/score")
    def score(customer: Customer) -> dict:
        ids = monitor.capture(customer.model_dump(), 1, 0.5)
        return {"churn": 1, "request_ids": ids}

    with served(app) as client:
        ids = client.post("/score", json={"age": 30, "plan": "a"}).json()["request_ids"]
    assert landed(tmp_path)["request_id"].to_list() == ids
