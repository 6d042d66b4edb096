"""The README is the how-to, the docs site holds the rest: the README stays short and its links lead somewhere,
and every docs page is in the site's navigation (mkdocs build --strict, in CI, checks the links inside docs/)."""
from __future__ import annotations

import re

import yaml

from tests.conftest import ROOT


def _nav_pages(node) -> set[str]:
    if isinstance(node, str):
        return {node}
    if isinstance(node, list):
        return set().union(*(_nav_pages(n) for n in node)) if node else set()
    if isinstance(node, dict):
        return set().union(*(_nav_pages(v) for v in node.values()))
    return set()


def test_the_readme_is_at_most_250_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_every_relative_link_of_the_readme_leads_to_a_file_and_heading():
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#([\w-]+))?\)", text)
    assert links
    for target, anchor in links:
        if target.startswith("http"):
            continue
        path = ROOT / target
        assert path.exists(), f"README links to {target}, which does not exist"
        if anchor:
            slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-")
                     for h in re.findall(r"^#+ (.+)$", path.read_text(), re.M)}
            assert anchor in slugs, f"README links to {target}#{anchor}: no such heading"


def test_every_docs_page_is_in_the_sites_navigation():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert pages == _nav_pages(config["nav"])
