"""Draw docs/dashboard.png: every panel of the shipped Grafana dashboard, fed by a real stack.

    uv run --with matplotlib python docs/render_dashboard.py --out docs/dashboard.png

Starts the native loopback stack of ``tests/e2e/test_stack.py`` (the shipped ``nginx.conf`` in
front of two model-server replicas, a Pushgateway, Prometheus with the shipped config and rules,
the analytics driver on a local Dask cluster), streams a clean-then-drifted stream through the
gateway with ``run.py``, then asks that Prometheus every query of
``grafana/dashboards/driftlake.json`` the way Grafana does (range queries over the run for
time series and stat panels, instant queries for tables) and draws the panels on the
dashboard's own grid. With ``--prometheus URL`` it draws from a running Prometheus instead
(the last ``--minutes``), e.g. the compose stack's http://127.0.0.1:9090.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "grafana" / "dashboards" / "driftlake.json"

# Grafana's dark theme and classic palette
BG, PANEL, TEXT, MUTED, GRID = "#111217", "#181b1f", "#ccccdc", "#8e8e9e", "#2c3235"
PALETTE = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#70dbed"]
NAMED = {"green": "#73bf69", "red": "#f2495c", "yellow": "#f2cc0c", "blue": "#5794f2"}
UNIT_H = 0.36  # inches per grid unit of height; the grid is 24 units wide


def _stack_api():
    """The native stack helpers (imported late: they need the repository on sys.path)."""
    sys.path.insert(0, str(ROOT))
    from tests import fullstack

    return fullstack


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


def run_stack(api, workdir: Path, requests: int, rate: float) -> tuple[str, Callable, float]:
    """Start the native stack, stream, and return what :func:`collect` needs (and a closer)."""
    import contextlib

    exit_stack = contextlib.ExitStack()
    stack = exit_stack.enter_context(api.native_stack(workdir, window_size=200))
    print(f"render_dashboard: native stack up, gateway {stack.gateway.url}, streaming {requests}")
    api.stream(
        stack.gateway,
        workdir,
        "--drift", "true",
        "--drift-start", "0.5",
        "--requests", str(requests),
        "--rate", str(rate),
        timeout=requests / rate + 120,
    )  # fmt: skip
    done = f'max(driftlake_rows_tested_total{{model="{api.MODEL}"}}) >= {requests // 200 * 200}'
    stack.prometheus.wait_for(done, timeout=60)
    tail = time.time() + 10  # a quiet tail after the stream, as a live dashboard would show
    while time.time() < tail:
        time.sleep(0.5)
    return stack.prometheus.url, exit_stack.close, stack.started


# ----------------------------------------------------------------------------- drawing


def legend(fmt: str, metric: dict[str, str], expr: str) -> str:
    if not fmt or fmt == "__auto":
        labels = {k: v for k, v in metric.items() if k != "__name__"}
        return ", ".join(f"{k}={v}" for k, v in labels.items()) or expr[:40]
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt)


def fmt_value(v: float, unit: str | None, now: float) -> str:
    if not math.isfinite(v):
        return "NaN"
    if unit == "dateTimeFromNow":
        ago = now - v / 1000
        return f"{ago:.0f} s ago" if ago < 120 else f"{ago / 60:.0f} min ago"
    if unit == "s":
        return f"{v * 1000:.0f} ms" if abs(v) < 1 else f"{v:.1f} s"
    if unit == "percentunit":
        return f"{v * 100:.1f}%"
    if unit == "reqps":
        return f"{v:.0f} req/s"
    return f"{v:.6g}" if v != int(v) else f"{int(v)}"


def mapped(v: float, mappings: list[dict]) -> tuple[str, str] | None:
    for m in mappings:
        opt = m.get("options", {}).get(str(int(v)) if float(v).is_integer() else str(v))
        if m.get("type") == "value" and opt:
            return opt["text"], NAMED.get(opt.get("color", ""), opt.get("color", TEXT))
    return None


def threshold_color(v: float, defaults: dict) -> str | None:
    steps = defaults.get("thresholds", {}).get("steps")
    if not steps:
        return None
    color = steps[0]["color"]
    for s in steps[1:]:
        if v >= s["value"]:
            color = s["color"]
    return NAMED.get(color, color)


def last_value(series: list[dict]) -> float | None:
    vals = [float(v) for s in series for _, v in s["values"][-1:] if math.isfinite(float(v))]
    return max(vals) if vals else None


def draw_stat(ax, panel: dict, results: list[list[dict]], now: float) -> None:
    defaults = panel["fieldConfig"]["defaults"]
    v = last_value(results[0])
    color = TEXT
    if v is None:
        text = defaults.get("noValue", "No data")
    else:
        text = fmt_value(v, defaults.get("unit"), now)
        hit = mapped(v, defaults.get("mappings", []))
        if hit:
            text, color = hit
        else:
            color = threshold_color(v, defaults) or TEXT
    if panel["options"].get("colorMode") == "background" and v is not None:
        ax.set_facecolor(color)
        color = "#ffffff"
    ax.text(0.5, 0.42, text, ha="center", va="center", fontsize=20, color=color, weight="bold")


def draw_table(ax, panel: dict, results: list[list[dict]], queries: list) -> None:
    renames, excluded = {}, set()
    for t in panel.get("transformations", []):
        if t["id"] == "organize":
            renames = t["options"].get("renameByName", {})
            excluded = {k for k, on in t["options"].get("excludeByName", {}).items() if on}
    rows: dict[tuple, dict[str, str]] = {}
    label_cols: list[str] = []
    for q, series in zip(queries, results, strict=True):
        col = renames.get(f"Value #{q.ref}", "Value")
        for s in series:
            labels = {k: v for k, v in s["metric"].items() if k != "__name__"}
            label_cols += [k for k in labels if k not in label_cols]
            row = rows.setdefault(tuple(sorted(labels.items())), dict(labels))
            if col not in excluded:
                row[col] = s["values"][-1][1]
    value_cols = [renames.get(f"Value #{q.ref}", "Value") for q in queries]
    cols = label_cols + [c for c in dict.fromkeys(value_cols) if c not in excluded]
    body = list(rows.values())
    sort = (panel["options"].get("sortBy") or [{}])[0].get("displayName")
    if sort in cols:
        body.sort(key=lambda r: float(r.get(sort, "inf")))
    ax.axis("off")
    if not body:
        ax.text(0.5, 0.5, "No data", ha="center", va="center", color=MUTED)
        return
    mappings = {}
    for o in panel["fieldConfig"].get("overrides", []):
        for p in o["properties"]:
            if p["id"] == "mappings":
                mappings[o["matcher"]["options"]] = p["value"]
    cells, colors = [], []
    for r in body:
        line, tint = [], []
        for c in cols:
            raw = r.get(c, "")
            text, color = raw, PANEL
            if c in mappings and raw != "":
                hit = mapped(float(raw), mappings[c])
                if hit:
                    text, color = hit
            elif c in value_cols and raw != "":
                text = f"{float(raw):.3g}"
            line.append(text)
            tint.append(color)
        cells.append(line)
        colors.append(tint)
    share = min(1.0, (len(body) + 1) * 0.14)  # a few rows stay at their height, many fit
    table = ax.table(
        cellText=cells,
        colLabels=cols,
        cellColours=colors,
        cellLoc="center",
        bbox=(0, 1 - share, 1, share),
    )
    table.auto_set_font_size(False)
    table.set_fontsize(6.5 if len(body) > 12 else 8)
    for (r, _), cell in table.get_celld().items():
        cell.set_edgecolor(GRID)
        cell.get_text().set_color(TEXT if r else MUTED)
        if r == 0:
            cell.set_facecolor(BG)


def draw_state_timeline(ax, series: list[dict], fmt: str, expr: str) -> None:
    import matplotlib.dates as mdates
    import numpy as np
    from matplotlib.colors import ListedColormap

    if not series:
        ax.text(0.5, 0.5, "No data", ha="center", va="center", color=MUTED)
        return
    series = sorted(series, key=lambda s: legend(fmt, s["metric"], expr), reverse=True)
    times = sorted({float(t) for s in series for t, _ in s["values"]})
    index = {t: i for i, t in enumerate(times)}
    grid = np.full((len(series), len(times)), np.nan)
    for row, s in enumerate(series):
        for t, v in s["values"]:
            grid[row, index[float(t)]] = float(v)
    x = mdates.date2num([datetime.fromtimestamp(t, UTC) for t in (times[0], times[-1])])
    ax.imshow(
        grid,
        aspect="auto",
        interpolation="nearest",
        cmap=ListedColormap([NAMED["green"], NAMED["red"]]),
        vmin=0,
        vmax=1,
        origin="lower",  # row i at y=i, where its tick label is
        extent=(x[0], x[1], -0.5, len(series) - 0.5),
    )
    ax.set_yticks(range(len(series)), [legend(fmt, s["metric"], expr) for s in series])
    ax.tick_params(axis="y", labelsize=5.5)
    ax.xaxis_date()
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))


def draw_timeseries(ax, panel: dict, results: list[list[dict]], queries: list, drift) -> None:
    import matplotlib.dates as mdates

    custom = panel["fieldConfig"]["defaults"].get("custom", {})
    bars = custom.get("drawStyle") == "bars"
    step = custom.get("lineInterpolation") == "stepAfter"
    i = 0
    for q, series in zip(queries, results, strict=True):
        for s in series:
            pts = [(float(t), float(v)) for t, v in s["values"] if math.isfinite(float(v))]
            if not pts:
                continue
            xs = [datetime.fromtimestamp(t, UTC) for t, _ in pts]
            ys = [v for _, v in pts]
            label = legend(q.legend, s["metric"], q.expr)
            color = PALETTE[i % len(PALETTE)]
            if bars:
                ax.bar(xs, ys, width=1 / 86400, color=color, alpha=0.7, label=label)
            else:
                ax.plot(xs, ys, color=color, lw=1.4, label=label, ds="steps-post" if step else None)
            i += 1
    if i == 0:
        ax.text(0.5, 0.5, "No data", ha="center", va="center", color=MUTED, transform=ax.transAxes)
    if custom.get("scaleDistribution", {}).get("type") == "log":
        ax.set_yscale("log")
    for a, b in drift:  # the dashboard's "Dataset drift" annotation
        ax.axvspan(a, b, color=NAMED["red"], alpha=0.12, lw=0)
    unit = panel["fieldConfig"]["defaults"].get("unit")
    if unit:
        ax.set_ylabel({"s": "seconds", "reqps": "req/s", "percentunit": "share"}.get(unit, unit))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    ax.grid(color=GRID, lw=0.6)
    if i:
        ax.legend(fontsize=6.5, loc="upper left", facecolor=PANEL, edgecolor=GRID, labelcolor=TEXT)


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
    api = _stack_api()
    if args.prometheus:
        end = time.time()
        start = end - args.minutes * 60
        results = collect(api, args.prometheus.rstrip("/"), start, end)
        caption = f"Prometheus {args.prometheus}, last {args.minutes:g} min"
    else:
        import pytest

        workdir = Path(tempfile.mkdtemp(prefix="driftlake-dashboard-"))
        try:
            prom_url, close, started = run_stack(api, workdir, args.requests, args.rate)
        except pytest.skip.Exception as exc:  # a binary is missing (tests.conftest)
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
