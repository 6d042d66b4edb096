"""`python -m cifar_ft.results [--check] [--results DIR] [PAGE ...]`: regenerate every results table of the
README and the docs from the benches' data in `results/` (`reports/results_pages.py`). `--check`: change
nothing, exit 1 when a page is out of date with the data (CI runs it). Pages default to README.md and every
docs page holding a generated block."""
from __future__ import annotations

import argparse
from pathlib import Path

from cifar_ft.reports.results_pages import BLOCK, regenerate

ROOT = Path(__file__).resolve().parents[1]


def default_pages(root: Path) -> list[Path]:
    pages = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    return [p for p in pages if p.is_file() and BLOCK.search(p.read_text())]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cifar_ft.results", description=__doc__)
    ap.add_argument("pages", nargs="*", type=Path, help="pages to regenerate (default: the README and docs/)")
    ap.add_argument("--results", type=Path, default=ROOT / "results", help="the benches' data (results/*.jsonl)")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when a page is out of date")
    args = ap.parse_args(argv)
    pages = args.pages or default_pages(ROOT)
    changed = regenerate(pages, args.results, check=args.check)
    for page in changed:
        print(f"{'out of date' if args.check else 'regenerated'}: {page}")
    if not changed:
        print(f"up to date: {len(pages)} page(s) from {args.results}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
