"""The documentation keeps up with the code: every relative link and anchor resolves, every
file and test it names exists, and every config key is documented with its default."""

from __future__ import annotations

import re
import tomllib
import unicodedata
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from bot.config import BotSettings

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", ROOT / "bench" / "README.md", *(ROOT / "docs").glob("*.md")])
CONFIGURATION = ROOT / "docs" / "configuration.md"

FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[(?:[^\]\n]|\][^(\n])*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
# A path in the repository, as the docs name one in a code span: `pipeline/render.py`,
# `tests/test_cli.py::test_render_the_demo`, `bot/migrations/V*.sql`.
REPO_PATH = re.compile(r"^(?:pipeline|bot|tests|bench|examples|docs)/[\w./*-]*(?:::\w+)?$")


def prose(text: str) -> str:
    """The page without its fenced code blocks (links and headings there are not real)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    kept = (ch for ch in text if ch in " -" or _word(unicodedata.category(ch)))
    return "".join(kept).replace(" ", "-")


def _word(category: str) -> bool:
    """Letters, digits, marks and connectors (`_`) stay in an anchor; other punctuation goes."""
    return category[0] in "LNM" or category == "Pc"


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for heading in HEADING.findall(prose(page.read_text())):
        base = slug(heading)
        name, n = base, 0
        while name in found:  # a repeated heading gets -1, -2, … as on GitHub
            n += 1
            name = f"{base}-{n}"
        found.add(name)
    return found


def links(page: Path) -> list[str]:
    text = CODE_SPAN.sub("", prose(page.read_text()))
    return LINK.findall(text)


def test_the_pages_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "bench/README.md", "docs/configuration.md", "docs/cli.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken: list[str] = []
    for target in links(page):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:: not checked here (no network)
            continue
        path, _, anchor = target.partition("#")
        place = (page.parent / path).resolve() if path else page
        if not place.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (place.suffix != ".md" or anchor not in anchors(place)):
            broken.append(f"{target}: no heading with the anchor #{anchor}")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_file_and_test_named_exists(page: Path) -> None:
    """`tests/test_x.py::test_y` names a test that exists; a bare `::test_z` on the same line
    belongs to the file named last before it."""
    missing: list[str] = []
    for line in prose(page.read_text()).splitlines():
        current: Path | None = None
        for span in CODE_SPAN.findall(line):
            if span.startswith("::") and current is not None:
                name = span[2:]
            elif REPO_PATH.match(span):
                path, _, name = span.partition("::")
                if "*" in path:
                    if not list(ROOT.glob(path)):
                        missing.append(span)
                    continue
                current = ROOT / path
                if not current.exists():
                    missing.append(span)
                    current = None
                    continue
            else:
                continue
            if name and current is not None and not defines(current, name):
                missing.append(f"{current.relative_to(ROOT)}::{name}")
    assert not missing, f"{page.relative_to(ROOT)} names what does not exist: {missing}"


def defines(module: Path, name: str) -> bool:
    pattern = rf"^\s*(?:async\s+)?(?:def|class)\s+{name}\b"
    return module.suffix == ".py" and re.search(pattern, module.read_text(), re.M) is not None


def config_tables() -> dict[str, str]:
    """docs/configuration.md's text under each `## [section]` heading."""
    parts = re.split(r"^## `\[(\w+)\]`\s*$", CONFIGURATION.read_text(), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def documented_keys(table: str) -> dict[str, str]:
    """Each key of a section's table, with its default cell (`width`, `height` share a row)."""
    rows: dict[str, str] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`"):
            for key in CODE_SPAN.findall(cells[0]):
                rows[key] = cells[1]
    return rows


def toml_value(default: Any) -> Any:
    if isinstance(default, Enum):
        return default.value
    if isinstance(default, Path):
        return str(default)
    if isinstance(default, tuple):
        return list(default)
    return default


SECTIONS: dict[str, type[BaseModel]] = {
    name: field.annotation
    for name, field in BotSettings.model_fields.items()
    if not field.exclude and isinstance(field.annotation, type)
}


def test_every_config_section_has_a_table_and_no_other() -> None:
    assert set(config_tables()) == set(SECTIONS)


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_every_config_key_is_documented_with_its_default(section: str) -> None:
    model = SECTIONS[section]
    rows = documented_keys(config_tables()[section])
    assert set(rows) == set(model.model_fields), f"[{section}] keys in the docs ≠ in the code"
    for key, cell in rows.items():
        default = model.model_fields[key].default
        spans = CODE_SPAN.findall(cell)
        if cell.lower().startswith("unset"):
            assert default is None, f"[{section}] {key}: documented as unset, but is {default!r}"
        else:
            assert len(spans) == 1 and cell == f"`{spans[0]}`", f"[{section}] {key}: {cell!r}"
            documented = tomllib.loads(f"v = {spans[0]}")["v"]
            assert documented == toml_value(default), f"[{section}] {key}: {cell} ≠ {default!r}"


def test_the_readme_fits_on_a_few_screens() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 160
