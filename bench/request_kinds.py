"""Benchmark: one request's parse + predict, in process, for a numeric and a mixed schema.

Run with ``uv run python -m bench.request_kinds [--repeats N]``. Both replicas serve their
default model with capture off (``serving.app._predict`` after the service's request parser;
no HTTP, no landing writer), so the table shows what a request costs the app itself:

- numeric: ``reference.parquet`` (30 numeric features), StandardScaler + LogisticRegression
  on its numpy fast path;
- mixed: a generated reference of 4 numeric and 4 categorical features (4 values each),
  the ColumnTransformer (StandardScaler, OneHotEncoder) + LogisticRegression pipeline on
  its numpy fast path (``serving._mixed_scorer``).

Each cell is the median over ``--repeats`` of the mean of 300 calls, after 100 warm-up calls;
the last column times the request parser alone.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import polars as pl

from harness import REFERENCE
from serving import ServingSettings
from serving.app import _predict
from serving.service import Service, build_service

ROWS = (1, 100)
CALLS = 300


def mixed_reference(path: Path, rows: int = 2000) -> pl.DataFrame:
    """Write a reference of 4 numeric and 4 categorical features (and a 0/1 target)."""
    rng = np.random.default_rng(0)
    frame = pl.DataFrame(
        {
            **{f"x{i}": rng.normal(size=rows) for i in range(4)},
            **{f"c{i}": rng.choice(["a", "b", "c", "d"], rows).tolist() for i in range(4)},
        }
    )
    frame.with_columns(target=pl.Series(rng.integers(0, 2, rows))).write_parquet(path)
    return frame


def per_call_us(service: Service, body: bytes, repeats: int, *, parse_only: bool) -> float:
    def once() -> None:
        x = service.parser.parse(body)
        if not parse_only:
            response = _predict(service, x)
            assert response.status_code == 200, response.body

    for _ in range(100):
        once()
    means = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(CALLS):
            once()
        means.append((time.perf_counter() - started) / CALLS * 1e6)
    return statistics.median(means)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        mixed_path = root / "mixed.parquet"
        cases = {
            "numeric (30 numbers)": (REFERENCE, pl.read_parquet(REFERENCE).drop("target")),
            "mixed (4 numbers, 4 strings)": (mixed_path, mixed_reference(mixed_path)),
        }
        print("| schema | rows | us per request | us per row | of which parsing, us |")
        print("|---|---:|---:|---:|---:|")
        for name, (reference, frame) in cases.items():
            settings = ServingSettings(
                reference_path=reference,
                warehouse=str(root / "wh"),
                replica="bench",
                capture=False,
            )
            service = build_service(settings)
            for rows in ROWS:
                part = frame.head(rows)
                body = orjson.dumps({"features": {"columns": part.columns, "data": part.rows()}})
                us = per_call_us(service, body, args.repeats, parse_only=False)
                parse = per_call_us(service, body, args.repeats, parse_only=True)
                print(f"| {name} | {rows} | {us:,.1f} | {us / rows:,.2f} | {parse:,.1f} |")


if __name__ == "__main__":
    main()
