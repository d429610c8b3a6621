"""Grafana JSON building blocks: a Prometheus target, a panel, a row, a variable, the grid."""

from __future__ import annotations

from typing import Any

DS = {"type": "prometheus", "uid": "prometheus"}
M = 'model="$model"'  # label matcher: the model chosen in the dashboard's $model variable
RI = "$__rate_interval"

Panel = dict[str, Any]


def target(expr: str, legend: str = "", *, instant: bool = False) -> dict[str, Any]:
    t: dict[str, Any] = {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto"}
    if instant:
        t |= {"instant": True, "range": False, "format": "table"}
    else:
        t |= {"instant": False, "range": True}
    return t


def panel(
    kind: str,
    title: str,
    targets: list[dict[str, Any]],
    w: int,
    h: int,
    *,
    unit: str | None = None,
    description: str = "",
    mappings: list[dict[str, Any]] | None = None,
    thresholds: list[tuple[float | None, str]] | None = None,
    options: dict[str, Any] | None = None,
    custom: dict[str, Any] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    transformations: list[dict[str, Any]] | None = None,
    no_value: str | None = None,
) -> Panel:
    for ref, t in zip("ABCDEFGH", targets, strict=False):
        t["refId"] = ref
    defaults: dict[str, Any] = {}
    if unit:
        defaults["unit"] = unit
    if mappings:
        defaults["mappings"] = mappings
    if thresholds:
        steps = [{"color": c, "value": v} for v, c in thresholds]
        defaults["thresholds"] = {"mode": "absolute", "steps": steps}
    if custom:
        defaults["custom"] = custom
    if no_value:
        defaults["noValue"] = no_value
    p: Panel = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"w": w, "h": h},
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
    }
    if transformations:
        p["transformations"] = transformations
    return p


def flag_mappings(off: str, on: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "value",
            "options": {
                "0": {"text": off, "color": "green", "index": 0},
                "1": {"text": on, "color": "red", "index": 1},
            },
        }
    ]


def row(title: str) -> Panel:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"w": 24}}


def layout(panels: list[Panel]) -> list[Panel]:
    """Give every panel an id and a grid position, filling rows of 24 columns left to right."""
    x = y = row_h = 0
    for pid, p in enumerate(panels, start=1):
        p["id"] = pid
        w, h = p["gridPos"]["w"], p["gridPos"].get("h", 1)
        if p["type"] == "row" or x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        x, row_h = x + w, max(row_h, h)
        if p["type"] == "row":
            x, y, row_h = 0, y + 1, 0
    return panels


def variable(name: str, query: str, label: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": query,
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "includeAll": False,
        "multi": False,
        "current": {},
        "options": [],
        "hide": 0,
    }
