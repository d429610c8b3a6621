"""Draw one Grafana panel (stat, table, state timeline, time series) on matplotlib axes."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

# Grafana's dark theme and classic palette
BG, PANEL, TEXT, MUTED, GRID = "#111217", "#181b1f", "#ccccdc", "#8e8e9e", "#2c3235"
PALETTE = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#70dbed"]
NAMED = {"green": "#73bf69", "red": "#f2495c", "yellow": "#f2cc0c", "blue": "#5794f2"}


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
