"""Where an image folder's files come from: a folder or a zip archive, listed and read with the same relative
names, and checked cheaply (`check_root`) before anything is built. Light on purpose (no Lightning): the config
checks that run before a command starts import it."""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

from cifar_ft.data.images import IMAGE_SUFFIXES
from cifar_ft.errors import ConfigError

BAD_IMAGE_POLICIES = ("skip", "error")
# Largest zip member read as an image (bytes once inflated): a crafted 1 MB member can inflate to GBs.
# 64 MiB is ~10x a 24-megapixel JPEG; larger members count as unreadable images.
MAX_MEMBER_BYTES = 64 * 2**20


class FolderSource:
    """Lists and reads files under a folder or inside a zip archive, with the same relative names.
    Only regular files are listed (a FIFO named .jpg would block a read forever); a zip member that
    fails its CRC, is cut short or inflates past `MAX_MEMBER_BYTES` reads as an unreadable image."""

    LAYOUT = "it must hold train/<class>/<images> (optionally val/ and test/), as a folder or a .zip"

    @classmethod
    def check_root(cls, root: str) -> None:
        """A folder, or a file that is a zip archive (checked from its end record: cheap)."""
        path = Path(root).expanduser()
        if not path.exists():
            raise ConfigError(f"data.root={root!r} does not exist; {cls.LAYOUT}")
        if path.is_file() and not zipfile.is_zipfile(path):
            what = "not a readable zip archive (truncated or not a zip)" if path.suffix == ".zip" else \
                "a file, not a folder or a .zip"
            raise ConfigError(f"data.root={root!r} is {what}; {cls.LAYOUT}")

    def __init__(self, root: str) -> None:
        self.check_root(root)
        self.root = Path(root).expanduser()
        layout = self.LAYOUT
        try:
            self.zip = zipfile.ZipFile(self.root) if self.root.is_file() else None
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ConfigError(f"data.root={root!r} is not a readable zip archive ({exc}); {layout}") from exc
        self._files = self.zip.namelist() if self.zip else None

    def splits(self) -> list[str]:
        if self.zip:
            return sorted({n.split("/")[0] for n in self._files if "/" in n})
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def listing(self, split: str) -> dict[str, list[str]]:
        """{class name: sorted image names} for one split; every class folder must hold images."""
        if self.zip:
            found: dict[str, list[str]] = {}
            for name in self._files:
                parts = name.split("/")
                if len(parts) == 3 and parts[0] == split and parts[1]:  # "train/cat/" too: an empty class
                    found.setdefault(parts[1], [])
                    if parts[2].lower().endswith(IMAGE_SUFFIXES):
                        found[parts[1]].append(name)
        else:
            found = {d.name: [str(f) for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
                     for d in (self.root / split).iterdir() if d.is_dir()}
        empty = sorted(c for c, files in found.items() if not files)
        if empty:
            raise ConfigError(f"data.root={str(self.root)!r}: class folder(s) {empty} in {split}/ hold no "
                              f"images ({', '.join(IMAGE_SUFFIXES)}); remove them or add images")
        return {c: sorted(found[c]) for c in sorted(found)}

    def read(self, name: str) -> bytes | str | None:
        """A zip member's bytes (None when it is damaged or too large), or a file's path."""
        if not self.zip:
            return name
        try:
            if self.zip.getinfo(name).file_size > MAX_MEMBER_BYTES:
                return None
            with self.zip.open(name) as member:  # streamed: stops at the cap even if the header lies
                data = member.read(MAX_MEMBER_BYTES + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError):  # CRC, truncation
            return None
        return data if len(data) <= MAX_MEMBER_BYTES else None
