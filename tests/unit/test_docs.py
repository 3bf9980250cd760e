"""The documentation holds together: every relative link in README.md and docs/*.md resolves
inside the repository (files and ``#anchors``), and docs/settings.md lists every setting that
durable_celery/conf.py reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from durable_celery.conf import DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: ``[text](target)`` outside code; the target ends at the first space or closing parenthesis.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are not links."""
    return CODE.sub("", FENCE.sub("", text))


def _anchors(markdown: Path) -> set[str]:
    """GitHub's anchors for the headings of ``markdown``."""
    anchors = set()
    for line in FENCE.sub("", markdown.read_text()).splitlines():
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if heading:
            title = heading.group(1).strip().lower()
            title = re.sub(r"[^\w\- ]", "", title.replace("`", ""))
            anchors.add(title.replace(" ", "-"))
    return anchors


def _links(document: Path) -> list[str]:
    return LINK.findall(_prose(document.read_text()))


def test_there_are_documents_with_links() -> None:
    assert (ROOT / "docs" / "index.md").exists()
    assert sum(len(_links(d)) for d in DOCUMENTS) > 20


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(document: Path) -> None:
    broken = []
    for target in _links(document):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (document.parent / path_part).resolve() if path_part else document
        if ROOT not in resolved.parents and resolved != ROOT:
            broken.append(f"{target} (outside the repository)")
        elif not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target} (no heading #{anchor} in {resolved.name})")
    assert not broken, f"{document.relative_to(ROOT)}: {broken}"


def test_the_settings_page_lists_every_setting_of_conf_py() -> None:
    page = (ROOT / "docs" / "settings.md").read_text()
    rows = set(re.findall(r"^\| `(DURABLE_[A-Z_]+)` \|", page, re.M))
    missing = sorted(set(DEFAULTS) - rows)
    assert not missing, f"docs/settings.md has no row for {missing}"
