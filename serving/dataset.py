"""The bundled demo data: scikit-learn's breast-cancer set, split into reference and held-out.

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
from pathlib import Path

import polars as pl
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

LABEL = "target"
SPLIT_SEED = 7
HOLDOUT_SHARE = 0.3


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
