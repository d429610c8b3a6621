"""The shipped Grafana dashboard's queries, run the way Grafana runs them against a Prometheus.

:func:`dashboard_queries` lists every panel target and annotation; :func:`evaluate` substitutes
the template variables and runs one as an instant or range query.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from harness import MODEL, ROOT

DASHBOARD = ROOT / "grafana" / "dashboards" / "driftlake.json"
FEATURE = "mean radius"  # one of run.py's drifted features: the dashboard's $feature
RATE_INTERVAL = "15s"  # $__rate_interval: >= 4 scrape intervals, as Grafana computes it
STEP = 1.0  # $__interval: the test Prometheus scrapes and evaluates every second


@dataclass(frozen=True)
class PanelQuery:
    """One target of a dashboard panel (or an annotation), as Grafana would send it."""

    title: str
    kind: str
    ref: str
    expr: str
    legend: str
    instant: bool


def dashboard_queries(dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    """Every panel target and annotation query of a Grafana dashboard, in panel order."""
    out = []
    for panel in dashboard["panels"]:
        for t in panel.get("targets", []):
            out.append(
                PanelQuery(
                    panel["title"],
                    panel["type"],
                    t.get("refId", "A"),
                    t["expr"],
                    t.get("legendFormat", ""),
                    bool(t.get("instant")),
                )
            )
    for a in dashboard.get("annotations", {}).get("list", []):
        if a.get("expr"):
            out.append(PanelQuery(a["name"], "annotation", "A", a["expr"], "", False))
    return out


def variables(
    start: float, end: float, *, feature: str = FEATURE, model: str = MODEL
) -> dict[str, str]:
    """Values of the dashboard's template and Grafana's built-in variables for a time range."""
    rng = max(int(end - start), 1)
    return {
        "model": model,
        "feature": feature,
        "__rate_interval": RATE_INTERVAL,
        "__interval": f"{STEP:g}s",
        "__interval_ms": str(int(STEP * 1000)),
        "__range": f"{rng}s",
        "__range_s": str(rng),
        "__range_ms": str(rng * 1000),
    }


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace ``$name`` and ``${name}``; an unknown variable is an error, not a silent hole."""

    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise KeyError(f"dashboard uses ${name}, which this test gives no value: {text!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)


def evaluate(
    prom_url: str,
    query: PanelQuery,
    start: float,
    end: float,
    step: float = STEP,
    *,
    model: str = MODEL,
    feature: str = FEATURE,
) -> list[dict[str, Any]]:
    """Run ``query`` as Grafana does: instant at ``end``, or a range query over the range,
    with ``$model`` and ``$feature`` chosen as given.

    Returns the series, each ``{"metric": {...}, "values": [[t, "v"], ...]}`` (one pair for
    an instant query); raises ``ValueError`` on a PromQL error.
    """
    expr = substitute(query.expr, variables(start, end, feature=feature, model=model))
    if query.instant:
        path, params = "query", {"query": expr, "time": end}
    else:
        path, params = "query_range", {"query": expr, "start": start, "end": end, "step": step}
    body = httpx.get(f"{prom_url}/api/v1/{path}", params=params, timeout=10, trust_env=False)
    data = body.json()
    if data.get("status") != "success":
        raise ValueError(f"{query.title!r} {expr!r} failed: {data.get('error', data)}")
    result = data["data"]["result"]
    if query.instant:
        return [{"metric": s["metric"], "values": [s["value"]]} for s in result]
    return result


def has_data(series: list[dict[str, Any]]) -> bool:
    """True if any series holds a finite value (NaN is what an empty rate ratio gives)."""
    return any(math.isfinite(float(v)) for s in series for _, v in s["values"])
