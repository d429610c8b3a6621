"""Benchmarks: scripts run by hand (``uv run python -m bench.<name>``), not tests."""
