"""The practical ceiling for the serving benchmark: a bare app that only calls the model.

One ``async def`` endpoint that reads the body, decodes it with orjson, hands the rows to
the same predictor driftlake's server uses, and answers ``{"prediction": [...]}``: no
validation, no capture, no metrics, no middleware. What any model server on this stack
(uvicorn + FastAPI, one worker) can at best do with this model.

Run: ``uv run python -m bench.bare --port 9002 [--model-path PATH]``.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from bench.procs import add_healthz, bench_predictor, columns_to_matrix, serve, server_parser
from serving import ServingSettings


def create_app(model_path: str | None) -> FastAPI:
    predictor = bench_predictor(model_path)
    order = {name: i for i, name in enumerate(predictor.feature_names)}
    app = FastAPI(title="bare model endpoint")

    @app.post("/get-prediction")
    async def get_prediction(request: Request) -> Response:
        features = orjson.loads(await request.body())["features"]
        out = predictor.predict(columns_to_matrix(features["columns"], features["data"], order))
        return Response(orjson.dumps({"prediction": out.labels}), media_type="application/json")

    return add_healthz(app)


def main() -> None:
    args = server_parser(__doc__.splitlines()[0], model_path=True).parse_args()
    # the model server's own default loop: the ceiling of the same stack
    loop = ServingSettings.model_fields["event_loop"].default
    serve(create_app(args.model_path), args.host, args.port, loop=loop)


if __name__ == "__main__":
    main()
