"""The README and docs/*.md as the tests read them: pages, sections and fenced blocks."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
"""Every page of documentation: the README, then docs/*.md."""

FENCE = re.compile(r"^```")
HEADING = re.compile(r"^(#+) ")


def section(page: Path, heading: str) -> str:
    """The text of ``page`` under the heading that starts with ``heading`` (``"## Python"``).

    It ends at the next heading of the same or a higher level; lines in fenced blocks (a ``#``
    comment, a Markdown sample) are never headings.
    """
    level = len(heading) - len(heading.lstrip("#"))
    sections: list[list[str]] = []
    inside = fenced = False
    for line in page.read_text().splitlines(keepends=True):
        if FENCE.match(line):
            fenced = not fenced
        match = None if fenced else HEADING.match(line)
        if match and len(match[1]) <= level:
            inside = line.startswith(heading)
            if inside:
                sections.append([])
                continue
        if inside:
            sections[-1].append(line)
    assert len(sections) == 1, f"{page.name}: {len(sections)} headings start with {heading!r}"
    return "".join(sections[0])


def blocks(text: str, language: str) -> list[str]:
    """The fenced blocks of ``language`` (```` ```bash ````, ```` ```python ````...) in ``text``."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)
