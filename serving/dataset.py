"""The bundled demo data: the breast-cancer set split into reference and held-out, and its drift.

Regenerate ``reference.parquet`` with ``uv run python -m serving.dataset``. The split is
deterministic (seeded, stratified), so the held-out rows that ``run.py`` streams in the
no-drift scenario are always the same genuine new sample, never the reference replayed.

The seed is the first (from 0) whose held-out part passes a two-sample KS test against the
reference on every feature at p > 0.3. A 171-row held-out set is replayed in many windows,
so a split that happens to differ on one feature (seed 20261125 gave p = 0.008 on
"mean symmetry") would make every no-drift window repeat that one sampling accident.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

LABEL = "target"
SPLIT_SEED = 7
HOLDOUT_SHARE = 0.3
# The demo's drift scenario: these features move by this many reference standard deviations.
DRIFT_SHIFTS = {"mean radius": 1.0, "mean texture": 1.0, "worst area": 1.0, "mean concavity": 1.0}


def split_breast_cancer() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return ``(reference, holdout)``: 70% / 30% of the breast-cancer rows, with the label."""
    data = load_breast_cancer()
    frame = pl.DataFrame(data.data, schema=list(data.feature_names), orient="row")
    frame = frame.with_columns(pl.Series(LABEL, data.target, dtype=pl.Int64))
    ref_idx, hold_idx = train_test_split(
        range(frame.height),
        test_size=HOLDOUT_SHARE,
        random_state=SPLIT_SEED,
        stratify=data.target,
    )
    return frame[sorted(ref_idx)], frame[sorted(hold_idx)]


def drift_shift(reference: pl.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Return the shift :data:`DRIFT_SHIFTS` adds to a row of ``columns`` (0 elsewhere)."""
    std = reference.select(columns).std().row(0)
    shift = np.zeros(len(columns))
    for name, sigmas in DRIFT_SHIFTS.items():
        i = list(columns).index(name)
        shift[i] = sigmas * std[i]
    return shift


class DemoStream:
    """Rows to send: held-out rows in shuffled passes, shifted after the drift start.

    Parameters
    ----------
    drift
        Whether rows from ``drift_start`` on are shifted by :func:`drift_shift`.
    drift_start
        Number of rows sent before the drift begins.
    seed
        Seed of the pass order.
    """

    def __init__(self, drift: bool, drift_start: int, seed: int) -> None:
        reference, holdout = split_breast_cancer()
        self.columns = [c for c in holdout.columns if c != LABEL]
        self.rows = holdout.select(self.columns).to_numpy()
        self.rng = np.random.default_rng(seed)
        self.order = np.empty(0, dtype=np.int64)
        self.sent = 0
        self.drift_start = drift_start if drift else None
        self.shift = drift_shift(reference, self.columns)

    def next_rows(self, n: int) -> np.ndarray:
        """Return the next ``n`` rows, float64 ``[n, len(columns)]``."""
        out = []
        for _ in range(n):  # n is the request's batch size, a handful of rows
            if self.order.size == 0:
                # whole passes over a fresh permutation keep repeats within a window rare
                self.order = self.rng.permutation(len(self.rows))
            row = self.rows[self.order[0]].copy()
            self.order = self.order[1:]
            if self.drift_start is not None and self.sent >= self.drift_start:
                row += self.shift
            self.sent += 1
            out.append(row)
        return np.vstack(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the default reference.parquet.")
    parser.add_argument("--out", type=Path, default=Path("reference.parquet"))
    args = parser.parse_args(argv)
    reference, _ = split_breast_cancer()
    reference.write_parquet(args.out, compression="zstd", statistics=True)
    print(f"wrote {args.out}: {reference.height} rows x {reference.width} columns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
