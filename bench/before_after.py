"""Benchmark: the model server of an older revision against this one, side by side.

Run with ``git archive <rev> | tar -x -C /tmp/old`` and then
``uv run python -m bench.before_after --old-tree /tmp/old [--batch 1] [--rounds 5]``.
Four servers run at once, each ``python -m serving`` with the default model: the old tree's
and this tree's, each with capture off and on (the old tree is imported first on its own
``sys.path``, so the same virtual environment serves both). wrk drives one at a time for
``--duration`` seconds with ``--connections`` connections, in a rotating order, for
``--rounds`` rounds; medians are shown.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from bench import procs, wrk
from bench.serving import bodies, wait_quiet

LAUNCH = (
    "import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = 'serving'; "
    "runpy.run_module('serving', run_name='__main__')"
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-tree", type=Path, required=True, help="an older checkout")
    parser.add_argument("--batch", type=int, default=1, help="rows per request")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="driftlake-bench-before-after-"))
    servers = {}
    try:
        for tree, label in ((args.old_tree.resolve(), "before"), (procs.ROOT, "after")):
            for capture in ("off", "on"):
                name = f"{label}-{capture}"
                flags = ["--no-capture"] if capture == "off" else []
                # fmt: off
                servers[name] = procs.start(
                    name,
                    ["-c", LAUNCH, str(tree), "--warehouse", str(work / name),
                     "--reference", str(procs.REFERENCE), "--replica", name, *flags],
                    work,
                )
                # fmt: on
        script = wrk.write_script(bodies(args.batch))
        for p in servers.values():
            wrk.run(p.url + "/get-prediction", script, 8, 1)  # warm-up
        names = list(servers)
        runs: dict[str, list] = {n: [] for n in names}
        for rnd in range(args.rounds):
            k = rnd % len(names)
            for name in names[k:] + names[:k]:
                p = servers[name]
                cpu0 = p.cpu_seconds()
                r = wrk.run(p.url + "/get-prediction", script, args.connections, args.duration)
                wait_quiet([p])
                runs[name].append((r, (p.cpu_seconds() - cpu0) / max(r.requests, 1) * 1e3))
    finally:
        for p in servers.values():
            p.stop()
    print(f"{args.batch} row(s)/request, {args.connections} connections, medians of {args.rounds}")
    print("| server | req/s | p50 ms | p99 ms | CPU ms/request |")
    print("|---|---|---|---|---|")
    for name, rs in runs.items():
        rps = statistics.median(r.rps for r, _ in rs)
        p50 = statistics.median(r.p50_ms for r, _ in rs)
        p99 = statistics.median(r.p99_ms for r, _ in rs)
        cpu = statistics.median(c for _, c in rs)
        print(f"| {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {cpu:.3f} |")


if __name__ == "__main__":
    main()
