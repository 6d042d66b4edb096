"""The results tables of the README and the docs, generated from `results/*.jsonl` (`results_data.py`).

A page holds a generated block between `<!-- results:NAME -->` and `<!-- /results:NAME -->`; `regenerate`
rewrites every such block from the data and leaves the rest of the page as it is. Blocks:
`presets` (the newest figures of each preset on each device), `gpu-status`, `presets-history` (every
preset row) and `benches` (the newest run of each bench, with its provenance).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from cifar_ft.errors import ConfigError
from cifar_ft.reports.results_data import PROVENANCE, latest_run, read_rows

BLOCK = re.compile(r"(<!-- results:([\w-]+) -->\n)(.*?)(<!-- /results:\2 -->)", re.S)
PRESET_COLUMNS = {"preset": "preset", "val_acc": "val acc", "test_acc": "test acc", "wall_s": "wall s",
                  "reference_s": "reference s", "budget_reference_s": "budget (ref. s)",
                  "device": "device", "machine": "machine", "date": "date",
                  "commit": "commit"}


def cell(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1 else f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    text = str(value)
    if m := re.fullmatch(r"([0-9a-f]{8})[0-9a-f]{32}(-dirty)?", text):  # a commit: short, and whether modified
        return m.group(1) + (m.group(2) or "")
    return text.replace("|", "\\|")


def table(rows: list[dict], columns: dict[str, str]) -> str:
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def newest_presets(rows: list[dict]) -> list[dict]:
    """The newest row of each (preset, device)."""
    newest: dict[tuple, dict] = {}
    for r in rows:
        key = (r.get("preset"), r.get("device"))
        if key not in newest or r["run"] >= newest[key]["run"]:
            newest[key] = r
    return sorted(newest.values(), key=lambda r: (str(r.get("preset")), str(r.get("device"))))


def presets_block(results: dict[str, list[dict]]) -> str:
    rows = newest_presets(results.get("presets", []))
    if not rows:
        return "No preset has been measured yet: `python -m cifar_ft.bench presets --data DIR` measures them.\n"
    return table(rows, PRESET_COLUMNS)


def presets_history_block(results: dict[str, list[dict]]) -> str:
    rows = sorted(results.get("presets", []), key=lambda r: r["run"], reverse=True)
    return table(rows, PRESET_COLUMNS) if rows else "No preset row yet.\n"


def gpu_status_block(results: dict[str, list[dict]]) -> str:
    rows = latest_run(results.get("gpu", []))
    if not rows:
        return ("**GPU:** no figure has been measured with `python -m cifar_ft.bench gpu` yet; every figure here "
                "is from a CPU.\n")
    r = rows[0]
    return (f"**GPU:** last measured on {r['device']}, {r['date']}, commit {cell(r['commit'])} "
            f"(`{r['command']}`; {len(rows)} rows in the results pages).\n")


def benches_block(results: dict[str, list[dict]]) -> str:
    parts = []
    for bench, rows in results.items():
        run = latest_run(rows)
        if not run:
            continue
        head = run[0]
        columns: dict[str, str] = {}
        for r in run:
            columns.update({k: k for k in r if k not in PROVENANCE})
        parts.append(f"### `{bench}`\n\n`{head['command']}` on {head['device']} ({head['machine']}; "
                     f"flags: {head['cpu_flags'] or 'none'}), {head['date']}, commit {cell(head['commit'])}:\n\n"
                     + table(run, columns))
    return "\n".join(parts) if parts else "No bench has written results yet.\n"


BLOCKS: dict[str, Callable[[dict[str, list[dict]]], str]] = {
    "presets": presets_block, "presets-history": presets_history_block, "gpu-status": gpu_status_block,
    "benches": benches_block}


def render(text: str, results: dict[str, list[dict]], where: str) -> str:
    def fill(m: re.Match) -> str:
        if m.group(2) not in BLOCKS:
            raise ConfigError(f"{where}: results block {m.group(2)!r} is unknown (valid: {', '.join(BLOCKS)})")
        return m.group(1) + BLOCKS[m.group(2)](results) + m.group(4)

    return BLOCK.sub(fill, text)


def regenerate(pages: list[Path], results_dir: Path, check: bool = False) -> list[Path]:
    """Rewrite the generated blocks of `pages` from `results_dir`; the pages that changed (with `check`:
    that would change, nothing written)."""
    results = read_rows(results_dir)
    changed = []
    for page in pages:
        old = page.read_text()
        new = render(old, results, str(page))
        if new != old:
            changed.append(page)
            if not check:
                page.write_text(new)
    return changed
