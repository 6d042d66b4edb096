"""Shared by the benchmarks: the images they train on (`--data`), printing and saving tables."""
from __future__ import annotations

import json
import sys
from pathlib import Path

DATA_HELP = ("your images: a folder or .zip holding train/<class>/*.jpg (CIFAR-10's training images as JPEGs "
             "reproduce the results pages); required")


def data_root(path: str | None) -> str:
    """`--data`, checked as `data.root` of an image folder is; one line and exit 2 without it or when it is
    not such a folder (a bench never looks for data the user did not give)."""
    from cifar_ft.data.folder_source import FolderSource
    from cifar_ft.errors import ConfigError

    try:
        if not path:
            raise ConfigError("no data given: pass --data DIR_OR_ZIP holding train/<class>/*.jpg")
        FolderSource.check_root(path)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    return str(Path(path))


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


RESULTS = Path(__file__).resolve().parents[2] / "results"


def add_results_arg(ap) -> None:
    ap.add_argument("--results", default=str(RESULTS), help="where the rows are appended (results/<bench>.jsonl)")


def record(bench: str, rows: list[dict], argv: list[str], results_dir: str) -> None:
    """The bench's rows, with their provenance, appended to `results_dir/<bench>.jsonl` (results as data)."""
    from cifar_ft.reports.results_data import append_rows, bench_command

    append_rows(Path(results_dir), bench, rows, bench_command(bench, argv))
