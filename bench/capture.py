"""Benchmark: what ``append_block`` costs on the request path, and the flusher's part after it,
for numeric and categorical rows, across source trees side by side.

Run with ``uv run python -m bench.capture [--tree NAME=PATH ...] [--rounds 7]``. Each round
starts one process per tree (``bench/_capture_worker.py`` with that tree's ``ingest`` first on
``sys.path``; PATH a checkout such as ``git worktree add /tmp/old HEAD``, this tree if none
is given), in alternating order, and times in each, for requests of 1 and 32 rows:

- ``append_block`` of :class:`LandingWriter` (its buffer) and of
  :class:`ProcessLandingWriter` (a copy into its spool; the flusher not started), per
  request: the request path (the median of ``--repeats`` loops, fresh writers each);
- the flusher's part of the process writer's rows: ``Spool.take`` and ``run_to_batch`` (the
  Arrow batches), then ``LandingWriter.flush`` of them as one landing file, per row; and the
  thread writer's ``flush`` of its buffer, per row.

Cases: ``num33`` (33 numeric features), ``cat30+3`` (30 numeric and 3 categorical, 8
distinct labels) and ``ids33`` (33 numeric with row ids given); the last two only in trees
that take them. Shown: medians over rounds, and each tree against the first as the median
of each round's own ratio [95% interval, sign test].
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from bench.paired import median_ci
from harness import ROOT

WORKER = Path(__file__).with_name("_capture_worker.py")
LAUNCH = (
    "import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
    "runpy.run_path(sys.argv.pop(1), run_name='__main__')"
)
CASES = ("num33", "cat30+3", "ids33")
# (metric, what it is per, label)
METRICS = (
    ("thread_append", "request", "LandingWriter.append_block µs/request"),
    ("process_append", "request", "ProcessLandingWriter.append_block µs/request"),
    ("process_take", "row", "flusher: take + Arrow µs/row"),
    ("process_flush", "row", "flusher: flush µs/row"),
    ("thread_flush", "row", "LandingWriter.flush µs/row"),
)


def parse_tree(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    root = Path(path).resolve()
    if not sep or not name or not (root / "ingest" / "capture").is_dir():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH of a driftlake tree, got {text!r}")
    return name, root


def round_of(tree: Path, requests: tuple[int, int], reps: int) -> dict[str, dict[str, float]]:
    out = subprocess.run(
        [sys.executable, "-c", LAUNCH, str(tree), str(WORKER), ",".join(CASES)]
        + [str(n) for n in (*requests, reps)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.capture", description=__doc__)
    parser.add_argument("--tree", type=parse_tree, action="append", help="NAME=PATH")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20_000, help="1-row requests a round")
    parser.add_argument("--requests-32", type=int, default=1_500, help="32-row requests a round")
    parser.add_argument(
        "--repeats", type=int, default=5, help="append loops a round (fresh writers; median)"
    )
    args = parser.parse_args(argv)
    trees = args.tree or [("this", ROOT)]
    names = [n for n, _ in trees]
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for rnd in range(args.rounds):
        order = trees if rnd % 2 == 0 else trees[::-1]
        for name, tree in order:
            runs[name].append(round_of(tree, (args.requests, args.requests_32), args.repeats))
    rows_of = {1: args.requests, 32: 32 * args.requests_32}
    requests_of = {1: args.requests, 32: args.requests_32}
    first = names[0]
    print(
        f"medians of {args.rounds} rounds (appends: each round's median of {args.repeats}); "
        f"against {first}: the median of each round's own ratio [95% interval, sign test]"
    )
    columns = ["case", "rows/request", "metric", *names, *(f"{n} / {first}" for n in names[1:])]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    keys = [k for k in runs[names[-1]][0]]
    for key in keys:
        case, rows = key.split("/")
        for metric, per, label in METRICS:
            n = requests_of[int(rows)] if per == "request" else rows_of[int(rows)]
            cells, own = [], {}
            for name in names:
                if key not in runs[name][0]:
                    cells.append("-")
                    continue
                own[name] = [r[key][metric] / n * 1e6 for r in runs[name]]
                cells.append(f"{statistics.median(own[name]):.2f}")
            shown = []
            for name in names[1:]:
                if name in own and first in own:
                    pairs = zip(own[name], own[first], strict=True)
                    shown.append(median_ci([a / b for a, b in pairs]).show("{:.2f}"))
                else:
                    shown.append("-")
            print(f"| {case} | {rows} | {label} | {' | '.join(cells + shown)} |")
    print()
    print(f"rows/s of the request path and of the flusher's part ({names[-1]}):")
    print("| case | rows/request | thread append | process append | flusher take + Arrow + flush |")
    print("|---|---|---|---|---|")
    for key in keys:
        case, rows = key.split("/")
        r = runs[names[-1]]
        n = rows_of[int(rows)]

        def rate(*metrics: str, r: list[dict] = r, key: str = key, n: int = n) -> str:
            return f"{n / statistics.median(sum(x[key][m] for m in metrics) for x in r):,.0f}"

        print(
            f"| {case} | {rows} | {rate('thread_append')} | {rate('process_append')} "
            f"| {rate('process_take', 'process_flush')} |"
        )


if __name__ == "__main__":
    main()
