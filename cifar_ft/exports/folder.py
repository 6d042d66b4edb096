"""The folder an export writes: checked before anything is loaded, written whole or not at all."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cifar_ft.errors import ConfigError


def check_out(out: Path, overwrite: bool) -> None:
    """Before anything is loaded or written: `out` must be a new or empty folder, or `overwrite=true`."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out={str(out)!r} is a file, not a folder; give a folder path with out=DIR")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if held and not overwrite:
        raise ConfigError(f"out={str(out)!r} is not empty ({len(held)} entries, e.g. {held[0]}); give a new "
                          "out=DIR, or overwrite=true to replace its contents")
    ancestor = next(p for p in [out.absolute(), *out.absolute().parents] if p.exists())
    if not ancestor.is_dir():
        raise ConfigError(f"out={str(out)!r} lies inside {str(ancestor)!r}, which is a file; give a folder path "
                          "with out=DIR")
    try:  # the temporary folder goes beside `out`: a probe file there, removed at once
        tempfile.TemporaryFile(dir=ancestor).close()
    except OSError as exc:
        raise ConfigError(f"out={str(out)!r} is not writable ({exc.strerror} in {ancestor}); give a writable "
                          "out=DIR") from exc


@contextlib.contextmanager
def whole_folder(out: Path) -> Iterator[Path]:
    """A temporary sibling folder to write into, renamed to `out` when the export succeeded (a killed
    export leaves `out` as it was: never new weights beside an old config.json)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
