"""The replaced design's metric server, rebuilt for the serving benchmark (bench only).

What the replaced design ran behind its model servers: an async FastAPI endpoint that takes
each forwarded request's rows (``{"features": {"columns", "data"}}``, parsed by a pydantic
body model), keeps a rolling window of the last 10 requests and, once the window is full,
runs ``scipy.stats.ks_2samp`` per feature against the full breast-cancer data on every
request, at p < 0.05 without correction, on the event loop. The one addition is counting:
``GET /stats`` says how many rows arrived, so the benchmark can compare rows captured with
rows the model server accepted.

Run: ``uv run python -m bench.baseline_collector --port 9000``.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel
from scipy.stats import ks_2samp
from sklearn.datasets import load_breast_cancer

from bench.procs import add_healthz, serve, server_parser

WINDOW = 10  # requests, as the replaced design's deque(maxlen=10)
P_THRESHOLD = 0.05


class FeaturePayload(BaseModel):
    columns: list[str]
    data: list[list[float]]


class DataDriftRequest(BaseModel):
    features: FeaturePayload


class RollingKS:
    """The replaced design's detector: a deque of the last requests, KS on every full window."""

    def __init__(self) -> None:
        data = load_breast_cancer()
        self.reference = {name: data.data[:, j] for j, name in enumerate(data.feature_names)}
        self.buffer: deque[tuple[list[str], np.ndarray]] = deque(maxlen=WINDOW)
        self.rows = self.requests = self.windows = self.flagged = 0

    def add(self, columns: list[str], data: list[list[float]]) -> dict:
        self.rows += len(data)
        self.requests += 1
        self.buffer.append((columns, np.array(data, dtype=np.float64)))
        if len(self.buffer) < WINDOW:
            return {"status": "accumulating", "samples_in_window": len(self.buffer)}
        current = np.concatenate([x for _, x in self.buffer])
        position = {name: j for j, name in enumerate(self.buffer[0][0])}
        pvalues = {}
        # the replaced design's per-feature loop, kept as it was (the cost being measured)
        for name, ref in self.reference.items():
            pvalues[name] = float(ks_2samp(ref, current[:, position[name]]).pvalue)
        share = sum(p < P_THRESHOLD for p in pvalues.values()) / len(pvalues)
        self.windows += 1
        self.flagged += share > 0
        return {"status": "drift_checked", "drift_share": share, "feature_pvalues": pvalues}


def create_app() -> FastAPI:
    app = FastAPI(title="replaced design: metric server")
    monitor = RollingKS()

    @app.post("/datadrift")
    async def datadrift(payload: DataDriftRequest) -> dict:
        return monitor.add(payload.features.columns, payload.features.data)

    @app.get("/stats")
    async def stats() -> dict:
        return {
            "rows_received": monitor.rows,
            "requests_received": monitor.requests,
            "windows_checked": monitor.windows,
            "windows_flagged": monitor.flagged,
        }

    return add_healthz(app)


def main() -> None:
    args = server_parser(__doc__.splitlines()[0]).parse_args()
    serve(create_app(), args.host, args.port)


if __name__ == "__main__":
    main()
