"""The replaced design's model server, rebuilt for the serving benchmark (bench only).

As the replaced design served: an async FastAPI endpoint with a pydantic body model
(``{"features": {"columns", "data"}}``) that schedules a ``BackgroundTasks`` task per request
POSTing the rows as JSON to the metric server with a NEW ``httpx.AsyncClient(timeout=2.0)``
each time, errors swallowed, then predicts and answers ``{"prediction": [...]}``. It wraps
the same predictor as driftlake's server (``--model-path``, or the default model), so the
comparison isolates the capture design. The one addition is counting: ``GET /stats`` says
how many rows were predicted and how many forwards succeeded, failed, or are in flight.

Run: ``uv run python -m bench.baseline_forwarding --port 9001 --collector http://...:9000``.
"""

from __future__ import annotations

import httpx
from fastapi import BackgroundTasks, FastAPI
from pydantic import BaseModel

from bench.procs import add_healthz, bench_predictor, columns_to_matrix, serve, server_parser


class FeaturePayload(BaseModel):
    columns: list[str]
    data: list[list[float]]


class GetPredictionRequest(BaseModel):
    features: FeaturePayload


class GetPredictionResponse(BaseModel):
    prediction: list[int]


class Counts:
    rows_predicted = 0
    forwards_scheduled = 0
    forwards_ok = 0
    forwards_failed = 0


def create_app(collector: str, model_path: str | None) -> FastAPI:
    predictor = bench_predictor(model_path)
    order = {name: i for i, name in enumerate(predictor.feature_names)}
    counts = Counts()
    app = FastAPI(title="replaced design: model server")

    async def send_to_metric_monitoring(payload: dict) -> None:
        try:
            # a new client per request, as the replaced design did (the cost being measured)
            async with httpx.AsyncClient(timeout=2.0) as client:
                resp = await client.post(collector, json=payload)
            ok = resp.is_success
        except httpx.RequestError:
            ok = False  # the replaced design passed silently; counted here
        counts.forwards_ok += ok
        counts.forwards_failed += not ok

    @app.post("/get-prediction", response_model=GetPredictionResponse)
    async def get_prediction(
        request: GetPredictionRequest, background_tasks: BackgroundTasks
    ) -> GetPredictionResponse:
        features = request.features
        background_tasks.add_task(
            send_to_metric_monitoring,
            {"features": {"columns": features.columns, "data": features.data}},
        )
        counts.forwards_scheduled += 1
        x = columns_to_matrix(features.columns, features.data, order)
        out = predictor.predict(x)
        counts.rows_predicted += x.shape[0]
        return GetPredictionResponse(prediction=out.labels)

    @app.get("/stats")
    async def stats() -> dict:
        done = counts.forwards_ok + counts.forwards_failed
        return {
            "rows_predicted": counts.rows_predicted,
            "forwards_scheduled": counts.forwards_scheduled,
            "forwards_ok": counts.forwards_ok,
            "forwards_failed": counts.forwards_failed,
            "forwards_in_flight": counts.forwards_scheduled - done,
        }

    return add_healthz(app)


def main() -> None:
    parser = server_parser(__doc__.splitlines()[0], model_path=True)
    parser.add_argument("--collector", required=True, help="the collector's /datadrift URL")
    args = parser.parse_args()
    serve(create_app(args.collector, args.model_path), args.host, args.port)


if __name__ == "__main__":
    main()
