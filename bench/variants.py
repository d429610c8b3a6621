"""Benchmark: the model server under several settings (or source trees), side by side.

Run with ``uv run python -m bench.variants --variant off=--no-capture --variant on=
[--model forest] [--batch 32] [--connections 8] [--rounds 5] [--replicas 3]``. Each
``--variant NAME[@TREE]=FLAGS`` starts ``--replicas`` processes of ``python -m serving``
with those flags (split like a shell would), from this tree or from ``TREE``, an older
checkout made with ``git archive <rev> | tar -x -C /tmp/old`` (imported first on its own
``sys.path``, so the same virtual environment serves both). All run at once; wrk drives one
at a time for ``--duration`` seconds, for ``--rounds`` rounds, in orders where each variant
follows each other equally often, one set of processes per cycle of orders. Shown: medians,
each variant's throughput and p99 against the first variant's as the median over rounds of
each round's own ratio and difference with the 95% interval of that median, and the p99 of
all rounds' requests pooled (a long run's p99, taken in alternating slices) with a
bootstrap interval over rounds for its difference. Run the same flags twice
(``--variant off=--no-capture --variant off2=--no-capture``) to see the noise floor:
identical servers differ by as much, and an interval that holds 0 (or 1.00) tells no
difference apart from it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
import tempfile
from dataclasses import asdict
from pathlib import Path

from bench import procs, wrk
from bench.paired import (
    histogram_ms,
    median_ci,
    pooled_difference,
    pooled_quantile,
    williams_orders,
)
from bench.serving import bodies, train_forest, wait_quiet
from harness import REFERENCE, ROOT

LAUNCH = (
    "import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = 'serving'; "
    "runpy.run_module('serving', run_name='__main__')"
)


def parse_variant(text: str) -> tuple[str, Path, list[str]]:
    """Split ``NAME[@TREE]=FLAGS`` into the name, the source tree and the flags."""
    head, sep, flags = text.partition("=")
    if not sep or not head:
        raise argparse.ArgumentTypeError(f"expected NAME[@TREE]=FLAGS, got {text!r}")
    name, _, tree = head.partition("@")
    root = Path(tree).resolve() if tree else ROOT
    if not (root / "serving" / "__main__.py").is_file():
        raise argparse.ArgumentTypeError(f"{root} holds no serving package")
    return name, root, shlex.split(flags)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variant", type=parse_variant, action="append", required=True, help="NAME[@TREE]=FLAGS"
    )
    parser.add_argument("--model", default="default", choices=["default", "forest"])
    parser.add_argument("--batch", type=int, default=1, help="rows per request")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="write every round here")
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="processes per variant, taking turns by cycle of orders: two identical processes "
        "can differ by a few percent for their whole life, so one per variant cannot show less",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="servers on CPU 1, wrk on CPU 0: what capture costs a worker that has one core",
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="driftlake-bench-variants-"))
    model = []
    if args.model == "forest":
        model = ["--model-path", str(train_forest(work / "forest.joblib"))]
    servers: dict[str, list[procs.Proc]] = {}
    try:
        for name, tree, flags in args.variant:
            for k in range(args.replicas):
                replica = f"{name}-{k}"
                # fmt: off
                servers.setdefault(name, []).append(procs.start(
                    replica,
                    ["-c", LAUNCH, str(tree), "--warehouse", str(work / replica),
                     "--reference", str(REFERENCE), "--replica", replica,
                     *model, *flags],
                    work,
                    cpus={1} if args.pin else None,
                ))
                # fmt: on
        script = wrk.write_script(bodies(args.batch))
        for p in (p for group in servers.values() for p in group):
            wrk.run(p.url + "/get-prediction", script, 8, 1)  # warm-up
        names = list(servers)
        runs: dict[str, list] = {n: [] for n in names}
        orders = williams_orders(len(names))
        for rnd in range(args.rounds):
            for name in (names[i] for i in orders[rnd % len(orders)]):
                # a whole cycle of orders on one set of processes, then the next set
                p = servers[name][rnd // len(orders) % args.replicas]
                cpu0 = p.cpu_split()
                r = wrk.run(
                    p.url + "/get-prediction",
                    script,
                    args.connections,
                    args.duration,
                    cpus={0} if args.pin else None,
                )
                wait_quiet([p])
                cpu1 = p.cpu_split()
                n = max(r.requests, 1)
                per_request = [(b - a) / n * 1e3 for a, b in zip(cpu0, cpu1, strict=True)]
                runs[name].append((r, per_request))
        dropped = {name: _dropped(group) for name, group in servers.items()}
    finally:
        for p in (p for group in servers.values() for p in group):
            p.stop()
        shutil.rmtree(work, ignore_errors=True)  # gigabytes of landing files after a long run
    print(
        f"{args.model} model, {args.batch} row(s)/request, {args.connections} connections, "
        f"{args.replicas} process(es) per variant, medians of {args.rounds} rounds of "
        f"{args.duration:g} s; against {names[0]}: the "
        "median of each round's own ratio and difference [95% interval, sign test]; pooled: "
        "the p99 of every round's requests together [95% bootstrap interval over rounds]"
    )
    print(
        f"| server | req/s | p50 ms | p99 ms | CPU ms/request: server + flusher "
        f"| req/s / {names[0]} | p99 - {names[0]}, ms | pooled p99 ms "
        f"| pooled p99 - {names[0]}, ms | rows dropped / captured |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = runs[names[0]]
    for name, rs in runs.items():
        rps = statistics.median(r.rps for r, _ in rs)
        p50 = statistics.median(r.p50_ms for r, _ in rs)
        p99 = statistics.median(r.p99_ms for r, _ in rs)
        own = statistics.median(c[0] for _, c in rs)
        kids = statistics.median(c[1] for _, c in rs)
        # against the first variant in the same round: the machine drifts between rounds
        pairs = list(zip(rs, base, strict=True))
        ratio = median_ci([r.rps / b.rps for (r, _), (b, _) in pairs])
        slower = median_ci([r.p99_ms - b.p99_ms for (r, _), (b, _) in pairs])
        hist = [histogram_ms(r.latency_us, r.latency_counts) for r, _ in rs]
        hist_base = [histogram_ms(b.latency_us, b.latency_counts) for b, _ in base]
        pooled = pooled_quantile(hist, 0.99)
        pooled_slower = pooled_difference(hist, hist_base)
        print(
            f"| {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {own:.3f} + {kids:.3f} | "
            f"{ratio.show('{:.2f}')} | {slower.show()} | {pooled:.2f} | {pooled_slower.show()} "
            f"| {dropped[name]} |"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    name: [
                        {
                            **asdict(r),
                            "latency_us": r.latency_us.tolist(),
                            "latency_counts": r.latency_counts.tolist(),
                            "cpu_ms": c,
                        }
                        for r, c in rs
                    ]
                    for name, rs in runs.items()
                },
                indent=1,
            )
        )


def _dropped(group: list[procs.Proc]) -> str:
    """Rows the capture dropped and captured, summed over a variant's processes (warm-ups
    included)."""
    counts = [procs.metrics(p) for p in group]
    dropped = sum(m.get("driftlake_capture_dropped_rows_total", 0) for m in counts)
    captured = sum(m.get("driftlake_capture_rows_total", 0) for m in counts)
    return f"{dropped:,.0f} / {captured:,.0f}"


if __name__ == "__main__":
    main()
