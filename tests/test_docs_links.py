"""Every relative link in the README and docs/ reaches a file, and its #anchor a heading there: sections move
between RESULTS.md and results-history.md, and a renamed heading silently broke a link before."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slugs(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+?)\s*$", re.sub(r"```.*?```", "", markdown, flags=re.S), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        if seen[slug]:
            seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


def test_slugs_follow_github():
    assert slugs("## Multi30k En→De: two recipes, their ensemble\n## `bench decode` (2026-12-07)\n## A\n## A") == {
        "multi30k-ende-two-recipes-their-ensemble", "bench-decode-2026-12-07", "a", "a-1"}


def test_relative_links_reach_their_file_and_heading():
    broken = []
    for document in DOCUMENTS:
        for target in LINK.findall(document.read_text()):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            linked = (document.parent / path).resolve() if path else document
            if not linked.exists():
                broken.append(f"{document.name}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in slugs(linked.read_text()):
                broken.append(f"{document.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
