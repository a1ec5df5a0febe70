"""What a user reads: a README of a readable length whose links resolve, and no tracker numbers anywhere they look."""

from __future__ import annotations

import re
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]
#: Everything a user of the package reads: the README and docs, the package (its messages and docstrings), the
#: recipes and their READMEs, the card templates, the benchmarks' README and the set-up scripts.
USER_FACING = [
    "README.md",
    "docs",
    "selfj_trl",
    "recipes",
    "model_cards",
    "bench/README.md",
    "scripts",
    "push_to_hub.py",
]
TRACKER_NUMBER = re.compile(r"\bissues? ?#?\d+|\(#\d+\)", re.IGNORECASE)


def _files():
    for entry in USER_FACING:
        path = REPO / entry
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        yield from (p for p in candidates if p.is_file() and p.suffix in {".md", ".py", ".yaml", ".sh", ".jinja"})


def test_the_readme_is_a_users_document_not_a_log():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, len(lines)
    headings = [line for line in lines if line.startswith("## ")]
    for wanted in ("## Two commands on a fresh machine", "## Stage by stage", "## Results", "## Where to read more"):
        assert wanted in headings, headings


def test_no_tracker_numbers_in_what_users_read():
    hits = [
        f"{p.relative_to(REPO)}:{n}: {line.strip()}"
        for p in _files()
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if TRACKER_NUMBER.search(line)
    ]
    assert not hits, "\n".join(hits)


@pytest.mark.parametrize("doc", ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))])
def test_relative_links_resolve(doc):
    text = (REPO / doc).read_text(encoding="utf-8")
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+://", t)]
    missing = [t for t in targets if t and not ((REPO / doc).parent / t).exists()]
    assert not missing, missing
