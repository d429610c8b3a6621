"""Build grafana/dashboards/driftlake.json, the provisioned driftlake dashboard.

Edit the panels in ``_drift_panels.py`` and ``_health_panels.py`` (built from ``_panel.py``), then
``uv run python grafana/build_dashboard.py`` and commit the sources and the JSON; ``--check``
exits 1 when the committed JSON is not what this script builds (a test runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from _drift_panels import drift_panels
from _health_panels import analytics_panels, serving_panels
from _panel import DS, M, layout, variable

OUT = Path(__file__).resolve().parent / "dashboards" / "driftlake.json"


def build() -> dict[str, Any]:
    return {
        "uid": "driftlake",
        "title": "driftlake: live data drift",
        "description": "Per-window drift over all replicas, the analytics job, and serving.",
        "tags": ["driftlake", "drift", "ml"],
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "graphTooltip": 1,
        "refresh": "5s",
        "time": {"from": "now-15m", "to": "now"},
        "timezone": "browser",
        "templating": {
            "list": [
                variable("model", "label_values(driftlake_dataset_drift, model)", "Model"),
                variable(
                    "feature",
                    'label_values(driftlake_feature_p_value{model="$model"}, feature)',
                    "Feature",
                ),
            ]
        },
        "annotations": {
            "list": [
                {
                    "name": "Dataset drift",
                    "datasource": DS,
                    "enable": True,
                    "iconColor": "red",
                    "expr": f"max(driftlake_dataset_drift{{{M}}}) == 1",
                    "step": "10s",
                    "titleFormat": "dataset drift",
                }
            ]
        },
        "panels": layout(drift_panels() + analytics_panels() + serving_panels()),
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the JSON is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run `uv run python {__file__}`", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
