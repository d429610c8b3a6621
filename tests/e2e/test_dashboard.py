"""The demo's Dask dashboard: its URL is printed, and the status page renders with tasks."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness import ROOT
from harness.procs import free_port, require_binary, stop_process

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

DASHBOARD_LINE = re.compile(r"^Dask dashboard: (http://127\.0\.0\.1:(\d+)/status)")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Names of the tasks in the bokeh task-stream plot; its source starts with one invisible
# placeholder rectangle named "start", so a real task is any other name.
TASK_STREAM_NAMES_JS = """() => {
    if (!window.Bokeh || !Bokeh.documents || !Bokeh.documents.length) return null;
    for (const doc of Bokeh.documents) {
        for (const m of doc.all_models) {
            if (m.name !== "task_stream") continue;
            for (const r of m.renderers) {
                const data = r.data_source.data;
                const names = data instanceof Map ? data.get("name") : data["name"];
                return Array.from(names || []).filter((n) => n !== "start");
            }
        }
    }
    return null;
}"""


class Demo:
    """``run.py`` in a subprocess whose stdout lines are collected as they come."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, match: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match(line):
                    return line
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.1)
        raise AssertionError("no such line in the demo's output:\n" + "\n".join(self.lines))

    def finish(self, timeout: float) -> str:
        self.proc.wait(timeout)
        self._reader.join(5)
        return "\n".join(self.lines)


@contextmanager
def demo(tmp_path: Path, *flags: str) -> Iterator[Demo]:
    """Run the embedded demo with ``flags``; it is killed if the block leaves early."""
    stderr = open(tmp_path / "stderr.txt", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable, "run.py",
            "--url", f"http://127.0.0.1:{free_port()}",  # nothing there: embedded pipeline
            "--warehouse", str(tmp_path / "wh"),
            *flags,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        yield Demo(proc)
    finally:
        stop_process(proc, 30)
        stderr.close()


def distinct_colours(png: Path) -> int:
    from PIL import Image

    with Image.open(png) as img:
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    return len(colours)


def test_status_page_renders_the_demo_s_tasks(tmp_path):
    chromium = require_binary("chromium")
    from playwright.sync_api import sync_playwright

    port = free_port()
    # 15 s of traffic: a window of 200 rows is tested about every 2 s while the page loads
    with demo(
        tmp_path, "--requests", "1500", "--rate", "100", "--dask-dashboard", f"127.0.0.1:{port}"
    ) as run:
        line = run.wait_line(lambda s: s.startswith("Dask dashboard:"), timeout=60)
        assert run.lines.index(line) <= 2, run.lines  # on the demo's first lines
        url, served = DASHBOARD_LINE.match(line).groups()
        assert int(served) == port
        run.wait_line(lambda s: s.startswith("window "), timeout=60)

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(url, wait_until="load", timeout=30_000)
                page.wait_for_selector("canvas", state="attached", timeout=30_000)
                tasks = page.wait_for_function(
                    f"() => {{ const n = ({TASK_STREAM_NAMES_JS})(); "
                    "return n && n.length >= 3 ? n : null; }",
                    timeout=30_000,
                    polling=250,
                ).json_value()
                title = page.title()
                shot = tmp_path / "dask-status.png"
                page.screenshot(path=str(shot))
            finally:
                browser.close()

        assert "Dask" in title, title
        assert len(tasks) >= 3 and all("run_batch" in name for name in tasks), tasks
        # a blank or error page has a handful of colours; plots and text have many
        assert distinct_colours(shot) > 50, shot

        out = run.finish(timeout=90)
    assert run.proc.returncode == 0, out[-3000:]
    assert "windows tested: 7" in out, out[-3000:]


def test_a_taken_dashboard_port_falls_back_to_a_free_one(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with demo(
            tmp_path, "--requests", "400", "--rate", "0", "--dask-dashboard", f"127.0.0.1:{port}"
        ) as run:
            out = run.finish(timeout=120)
    assert run.proc.returncode == 0, out[-3000:]
    line = next(s for s in out.splitlines() if s.startswith("Dask dashboard:"))
    assert int(DASHBOARD_LINE.match(line).group(2)) != port
    assert f"127.0.0.1:{port} is in use" in line
    assert "windows tested: 2" in out
