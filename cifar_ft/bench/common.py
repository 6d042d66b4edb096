"""Shared by the benchmarks: locating the shared data, printing and saving tables."""
from __future__ import annotations

import json
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-train-jpeg.zip"


def data_root(path: str | None) -> str:
    root = Path(path) if path else DEFAULT_DATA
    if not root.exists():
        raise SystemExit(f"error: data {str(root)!r} not found; pass --data DIR_OR_ZIP holding train/<class>/*.jpg")
    return str(root)


def print_table(rows: list[dict], columns: list[str], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*[_fmt(row.get(c)) for c in columns])
    Console(width=200).print(table)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return "" if value is None else str(value)


def save_json(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {path}")
