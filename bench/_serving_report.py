"""The record of one ``bench.serving`` wrk run, and the tables that report a model's runs."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np

from bench.paired import Median, histogram_ms, median_ci, pooled_difference

CONFIGS = ("off", "on", "fwd", "bare")


@dataclass
class Run:
    """One wrk run of one configuration in one cell."""

    model: str
    config: str
    batch: int
    connections: int
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    accepted_rows: int
    captured_rows: int | None  # landed (on) or received by the collector (fwd)
    cpu_ms_per_request: float
    start: float
    end: float
    # wrk's latency histogram: distinct values (us) and their counts, for pooled percentiles
    latency_us: list[int] = field(default_factory=list, repr=False)
    latency_counts: list[int] = field(default_factory=list, repr=False)


def paired(cell: dict[str, list[Run]], a: str, b: str, attr: str, ratio: bool) -> Median:
    """Median over rounds of ``a``'s ``attr`` against ``b``'s in the same round, with its
    95% interval."""
    by_round = {r.round: r for r in cell[b]}
    return median_ci(
        [
            getattr(r, attr) / getattr(by_round[r.round], attr)
            if ratio
            else getattr(r, attr) - getattr(by_round[r.round], attr)
            for r in cell[a]
        ]
    )


def med(runs: list[Run], attr: str) -> float:
    return statistics.median(getattr(r, attr) for r in runs)


def by_round_histograms(runs: list[Run]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each run's latency histogram in ms, in round order (so two configurations pair up)."""
    ordered = sorted(runs, key=lambda r: r.round)
    return [histogram_ms(r.latency_us, r.latency_counts) for r in ordered]


def report(model: str, runs: list[Run], totals: dict) -> str:
    """Each cell's medians and paired comparisons, its captured rows and CPU, and a summary."""
    lines = [
        f"model: {model}   (medians of {max(r.round for r in runs) + 1} rounds; "
        f"req/s | p50 ms | p99 ms per configuration; ratios and p99 difference: medians of "
        f"each round's own, [95% interval, sign test] from 6 rounds on)",
        "| rows/req | conns | off | on | fwd (replaced) | bare (ceiling) "
        "| on/off | on/fwd | on/bare | on p99 - off p99 | pooled: on p99 - off p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    cells = sorted({(r.batch, r.connections) for r in runs})
    capture = [
        "| rows/req | conns | on: landed / accepted | fwd: received / accepted (lost) "
        "| CPU ms/req off / on / fwd / bare |",
        "|---|---|---|---|---|",
    ]
    for batch, conns in cells:
        cell = {
            c: [r for r in runs if (r.batch, r.connections, r.config) == (batch, conns, c)]
            for c in CONFIGS
        }
        rps = {c: med(cell[c], "rps") for c in CONFIGS}
        p50 = {c: med(cell[c], "p50_ms") for c in CONFIGS}
        p99 = {c: med(cell[c], "p99_ms") for c in CONFIGS}
        shown = " | ".join(f"{rps[c]:,.0f} / {p50[c]:.1f} / {p99[c]:.1f}" for c in CONFIGS)
        on_off, on_fwd, on_bare = (
            paired(cell, "on", c, "rps", True) for c in ("off", "fwd", "bare")
        )
        slower = paired(cell, "on", "off", "p99_ms", False)
        pooled = pooled_difference(*(by_round_histograms(cell[c]) for c in ("on", "off")))
        lines.append(
            f"| {batch} | {conns} | {shown} | {on_off.show('{:.2f}')} | {on_fwd.value:.1f}x "
            f"| {on_bare.value:.2f} | {slower.show('{:+.1f}')} | {pooled.show('{:+.1f}')} |"
        )
        on_landed = sum(r.captured_rows for r in cell["on"])
        on_acc = sum(r.accepted_rows for r in cell["on"])
        fwd_rec = sum(r.captured_rows for r in cell["fwd"])
        fwd_acc = sum(r.accepted_rows for r in cell["fwd"])
        lost = 1 - fwd_rec / fwd_acc if fwd_acc else 0.0
        cpu = " / ".join(f"{med(cell[c], 'cpu_ms_per_request'):.2f}" for c in CONFIGS)
        capture.append(
            f"| {batch} | {conns} | {on_landed:,} / {on_acc:,} "
            f"({on_landed / max(on_acc, 1):.1%}) | {fwd_rec:,} / {fwd_acc:,} ({lost:.1%} lost) "
            f"| {cpu} |"
        )
    errors = sum(r.errors for r in runs)
    summary = (
        f"on, whole run: {totals['landed_on']:,} rows landed after SIGTERM of "
        f"{totals['accepted_on']:,} accepted (warm-up included); wrk errors: {errors}"
    )
    return "\n".join([*lines, "", *capture, "", summary])
