"""The manual stays true: the configuration page is the code's, links resolve, examples import."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from analytics.settings import AnalyticsSettings
from docs.configuration import COMMAND, OUTPUT, render, stale_message
from harness import ROOT
from harness.settings import field_names
from ingest.maintain.settings import MaintenanceSettings
from serving.settings import ServingSettings

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.fixture(scope="module")
def generated() -> str:
    return render()


def test_configuration_page_is_generated_from_the_code(generated):
    committed = OUTPUT.read_text() if OUTPUT.exists() else ""
    if committed != generated:
        pytest.fail(stale_message(committed, generated), pytrace=False)


def field_envs(cls: type[BaseSettings]) -> set[str]:
    """``DRIFTLAKE_<NAME>`` of every field of ``cls``, a nested settings class's in its place."""
    return {f"DRIFTLAKE_{name.upper()}" for name in field_names(cls)}


@pytest.mark.parametrize("cls", [ServingSettings, AnalyticsSettings, MaintenanceSettings])
def test_configuration_page_has_a_row_for_every_setting(generated, cls):
    for env in sorted(field_envs(cls)):
        assert f"| `{env}` | `--{env.removeprefix('DRIFTLAKE_').lower().replace('_', '-')}`" in (
            generated
        ), env
    assert COMMAND in generated  # the page says how it is made


def prose(text: str) -> str:
    """``text`` without its fenced code blocks (a ``# comment`` there is not a heading)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose(page.read_text()).splitlines():
        if m := re.match(r"^#{1,6}\s+(.*)", line):
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_point_at_files_and_headings_that_exist(page):
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: link to {target}: no such file"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{page.name}: link to {target}: no such heading"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_python_examples_parse_and_their_imports_exist(page):
    for lang, code in FENCE.findall(page.read_text()):
        if lang != "python":
            continue
        tree = ast.parse(code)  # a SyntaxError names the example
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    importlib.import_module(alias.name)
            elif isinstance(node, ast.ImportFrom):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), (
                        f"{page.name}: `from {node.module} import {alias.name}`: no such name"
                    )


def test_readme_gives_the_two_commands_and_stays_a_short_manual():
    text = (ROOT / "README.md").read_text()
    assert "uv run run.py --drift true" in text
    assert "uv run pytest" in text
    lines = text.count("\n")
    assert lines <= 200, f"README.md has {lines} lines: move the detail into a page of docs/"
