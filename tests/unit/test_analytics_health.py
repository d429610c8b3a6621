"""What the analytics job's /healthz answers, and its /metrics, through a run's life."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from analytics.driver import CycleReport
from analytics.health import Health, default_max_age
from harness.servers import parse_metrics

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_starting_then_ok_then_stale_with_the_reason():
    clock, errors = Clock(), [0]
    health = Health(max_age=10, clock=clock)
    health.count_errors(lambda: errors[0])
    s = health.status()
    assert (s.healthy, s.status, s.cycles) == (False, "starting", 0)  # no success yet: 503
    errors[0] = 2
    clock.now += 5
    s = health.status()
    assert not s.healthy and "no cycle has succeeded yet" in s.reason and s.errors == 2

    health.cycle_succeeded(CycleReport(1, 100, 0, (), 0, seconds=0.25))
    clock.now += 9.9
    s = health.status()
    assert (s.healthy, s.status, s.cycles, s.errors, s.errors_since_success) == (
        True,
        "ok",
        3,
        2,
        0,
    )

    errors[0] = 5
    clock.now += 0.2  # 10.1 s after the last success
    s = health.status()
    assert (s.healthy, s.status, s.errors_since_success) == (False, "stale", 3)
    assert "10.1 s ago, more than the 10 s allowed; 3 cycles failed since" in s.reason

    m = parse_metrics(generate_latest(health.registry).decode())
    assert m["driftlake_analytics_cycles_total"] == 6
    assert m["driftlake_analytics_cycle_errors_total"] == 5
    assert m["driftlake_analytics_windows_total"] == 0
    assert m["driftlake_analytics_last_success_timestamp_seconds"] == 1_000_005.0
    assert m["driftlake_analytics_last_cycle_duration_seconds"] == 0.25
    assert m["driftlake_analytics_healthy"] == 0


def test_default_bound_is_three_intervals_but_at_least_a_minute():
    assert default_max_age(2.0) == 60.0
    assert default_max_age(30.0) == 90.0
