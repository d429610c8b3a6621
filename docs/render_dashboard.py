"""Draw docs/dashboard.png: every panel of the shipped Grafana dashboard, fed by a real stack.

    uv run --with matplotlib python docs/render_dashboard.py --out docs/dashboard.png

Starts the native loopback stack (``harness.fullstack``, as ``tests/e2e/test_stack.py`` does:
the shipped ``nginx.conf`` in front of two model-server replicas, a Pushgateway, Prometheus with
the shipped config and rules, the analytics driver on a local Dask cluster), streams a
clean-then-drifted stream through the gateway with ``run.py``, then asks that Prometheus
every query of ``grafana/dashboards/driftlake.json`` the way Grafana does (range queries over
the run for time series and stat panels, instant queries for tables) and draws the panels on
the dashboard's own grid. With ``--prometheus URL`` it draws from a running Prometheus instead
(the last ``--minutes``), e.g. the compose stack's http://127.0.0.1:9090.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a file, Python puts docs/ on sys.path, not the repository that holds docs/ and harness/
sys.path.insert(0, str(ROOT))

from docs._draw import (  # noqa: E402
    BG,
    GRID,
    MUTED,
    PANEL,
    TEXT,
    draw_stat,
    draw_state_timeline,
    draw_table,
    draw_timeseries,
)

DASHBOARD = ROOT / "grafana" / "dashboards" / "driftlake.json"
UNIT_H = 0.36  # inches per grid unit of height; the grid is 24 units wide


def _harness():
    """The harness's dashboard queries and native stack (imported late: ``-h`` needs neither
    them nor the analytics stack they import)."""
    from harness import dashboard, fullstack

    return dashboard, fullstack


# ----------------------------------------------------------------------------- data


def collect(api, prom_url: str, start: float, end: float) -> dict[tuple[str, str], list[dict]]:
    """Every panel query's result, keyed by (panel title, refId); a failing query is empty."""
    dashboard = json.loads(DASHBOARD.read_text())
    out = {}
    for q in api.dashboard_queries(dashboard):
        try:
            out[(q.title, q.ref)] = api.evaluate(prom_url, q, start, end)
        except ValueError as exc:
            print(f"render_dashboard: {exc}", file=sys.stderr)
            out[(q.title, q.ref)] = []
    return out


def run_stack(fullstack, workdir: Path, requests: int, rate: float) -> tuple[str, Callable, float]:
    """Start the native stack, stream, and return what :func:`collect` needs (and a closer)."""
    import contextlib

    exit_stack = contextlib.ExitStack()
    stack = exit_stack.enter_context(fullstack.native_stack(workdir, window_size=200))
    print(f"render_dashboard: native stack up, gateway {stack.gateway.url}, streaming {requests}")
    fullstack.stream(
        stack.gateway,
        workdir,
        "--drift", "true",
        "--drift-start", "0.5",
        "--requests", str(requests),
        "--rate", str(rate),
        timeout=requests / rate + 120,
    )  # fmt: skip
    tested = requests // 200 * 200
    done = f'max(driftlake_rows_tested_total{{model="{fullstack.MODEL}"}}) >= {tested}'
    stack.prometheus.wait_for(done, timeout=60)
    tail = time.time() + 10  # a quiet tail after the stream, as a live dashboard would show
    while time.time() < tail:
        time.sleep(0.5)
    return stack.prometheus.url, exit_stack.close, stack.started


def drift_spans(series: list[dict]) -> list[tuple[datetime, datetime]]:
    """Runs of consecutive annotation samples (the drift flag was 1 there)."""
    spans: list[list[float]] = []
    for s in series:
        for t, _ in s["values"]:
            t = float(t)
            if spans and t - spans[-1][1] <= 1.5:
                spans[-1][1] = t
            else:
                spans.append([t, t])
    return [(datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC)) for a, b in spans]


def render(api, results: dict, out: Path, start: float, end: float, caption: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dashboard = json.loads(DASHBOARD.read_text())
    queries = api.dashboard_queries(dashboard)
    names = api.variables(start, end)
    panels = dashboard["panels"]
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    top = 2.0  # grid units for the header
    fig_w, fig_h = 22.0, (height + top) * UNIT_H
    fig = plt.figure(figsize=(fig_w, fig_h), facecolor=BG)
    plt.rcParams.update({"text.color": TEXT, "axes.labelcolor": MUTED, "font.size": 8})
    fig.text(0.01, 1 - 0.6 / (height + top), dashboard["title"], fontsize=15, weight="bold")
    wrapped = textwrap.fill(caption, 230)
    fig.text(0.01, 1 - 1.1 / (height + top), wrapped, fontsize=8.5, color=MUTED, va="top")
    annotation = next(q for q in queries if q.kind == "annotation")
    drift = drift_spans(results[(annotation.title, annotation.ref)])
    pad = 0.12  # grid units between panels

    def box(p: dict) -> tuple[float, float, float, float]:
        g = p["gridPos"]
        x0, w = (g["x"] + pad) / 24, (g["w"] - 2 * pad) / 24
        h = (g["h"] - 2 * pad) / (height + top)
        y0 = 1 - (g["y"] + top + g["h"] - pad) / (height + top)
        return x0, y0, w, h

    for p in panels:
        title = api.substitute(p["title"], names)
        x0, y0, w, h = box(p)
        if p["type"] == "row":
            fig.text(x0, y0 + h / 2, title, fontsize=11, weight="bold", va="center")
            continue
        frame = fig.add_axes((x0, y0, w, h), facecolor=PANEL)
        frame.set_xticks([])
        frame.set_yticks([])
        for spine in frame.spines.values():
            spine.set_color(GRID)
        title_h = 0.32 / (p["gridPos"]["h"] - 2 * pad)  # one line of title, in panel heights
        frame.text(0.012, 1 - title_h / 2, title, transform=frame.transAxes, fontsize=9.5,
                   va="center", weight="bold")  # fmt: skip
        own = [q for q in queries if q.title == p["title"] and q.kind == p["type"]]
        res = [results[(q.title, q.ref)] for q in own]
        if p["type"] == "stat":
            draw_stat(frame, p, res, end)
            continue
        inner = (x0 + w * 0.055, y0 + h * 0.1, w * 0.93, h * (0.88 - title_h))
        if p["type"] == "table":
            inner = (x0 + w * 0.01, y0 + h * 0.02, w * 0.98, h * (0.97 - title_h))
        if p["type"] == "state-timeline":
            inner = (x0 + w * 0.16, y0 + h * 0.07, w * 0.82, h * (0.91 - title_h))
        ax = fig.add_axes(inner, facecolor=PANEL)
        ax.tick_params(colors=MUTED, labelsize=7)
        for spine in ax.spines.values():
            spine.set_color(GRID)
        if p["type"] == "table":
            draw_table(ax, p, res, own)
        elif p["type"] == "state-timeline":
            draw_state_timeline(ax, res[0], own[0].legend, own[0].expr)
        else:
            draw_timeseries(ax, p, res, own, drift)
            ax.set_xlim(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=72, facecolor=BG)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    parser.add_argument("--prometheus", help="draw from this running Prometheus instead")
    parser.add_argument("--minutes", type=float, default=15, help="with --prometheus: range")
    parser.add_argument("--requests", type=int, default=2400, help="rows to stream (1 each)")
    parser.add_argument("--rate", type=float, default=100, help="requests per second")
    args = parser.parse_args(argv)
    api, fullstack = _harness()
    if args.prometheus:
        end = time.time()
        start = end - args.minutes * 60
        results = collect(api, args.prometheus.rstrip("/"), start, end)
        caption = f"Prometheus {args.prometheus}, last {args.minutes:g} min"
    else:
        import pytest

        workdir = Path(tempfile.mkdtemp(prefix="driftlake-dashboard-"))
        try:
            prom_url, close, started = run_stack(fullstack, workdir, args.requests, args.rate)
        except pytest.skip.Exception as exc:  # a binary is missing (harness.procs)
            print(f"render_dashboard: {exc.msg}", file=sys.stderr)
            return 2
        try:
            start, end = started, time.time()
            results = collect(api, prom_url, start, end)
        finally:
            close()
        caption = (
            "Native loopback stack (the shipped nginx.conf, 2 model-server replicas, Pushgateway, "
            "Prometheus with the shipped config and rules, analytics on a local Dask cluster); "
            f"run.py --drift true --drift-start 0.5 --requests {args.requests} "
            f"--rate {args.rate:g} through the gateway; windows of 200 rows; "
            f"$feature = {api.FEATURE}. Red bands: the dashboard's dataset-drift annotation."
        )
    empty = [k for k, v in results.items() if not v]
    render(api, results, args.out, start, end, caption)
    size = args.out.stat().st_size
    print(f"render_dashboard: wrote {args.out} ({size / 1024:.0f} KB); empty queries: {empty}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
