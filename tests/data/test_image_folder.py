"""Image folders: layout, held-out splits, zip input, bad files, grayscale/RGBA, missing data."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cifar_ft.data.folder_source import FolderSource
from cifar_ft.data.image_folder import ImageFolderDataModule
from cifar_ft.data.images import FileImageDataset
from cifar_ft.errors import ConfigError

KW = dict(input_size=32, mean=[0.5] * 3, std=[0.5] * 3, batch_size=4, val_size=0.2, test_size=0.2)


def write_folder(root: Path, split: str = "train", per_class: int = 10, classes=("cat", "dog", "eel"),
                 mode: str = "RGB") -> None:
    rng = np.random.default_rng(0)
    for ci, cls in enumerate(classes):
        (root / split / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) // 4 + ci * 60
            img = Image.fromarray(arr)
            img = img.convert(mode) if mode != "RGB" else img
            img.save(root / split / cls / f"{i:03d}.png")


def test_folder_splits_held_out_and_stratified(tmp_path):
    write_folder(tmp_path, per_class=20)
    dm = ImageFolderDataModule(root=str(tmp_path), **KW)
    dm.setup("fit")
    sizes = {k: len(v) for k, v in dm.splits.items()}
    assert sizes == {"train": 36, "val": 12, "test": 12}
    assert dm.class_names == ["cat", "dog", "eel"]
    assert torch.bincount(dm.splits["test"].labels).tolist() == [4, 4, 4]
    assert dm.splits["train"].images.shape[1:] == (3, 32, 32)
    again = ImageFolderDataModule(root=str(tmp_path), **KW)
    again.setup("fit")
    assert again.splits["test"].paths == dm.splits["test"].paths  # seeded


def test_folder_with_only_test_split_for_eval(tmp_path):
    write_folder(tmp_path, split="test", per_class=5)
    dm = ImageFolderDataModule(root=str(tmp_path), **KW)
    dm.setup("test")
    assert len(dm.splits["test"]) == 15 and dm.splits["train"] is None


def test_zip_reads_like_a_folder(tmp_path):
    write_folder(tmp_path / "d", per_class=10)
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as zf:
        for f in sorted((tmp_path / "d").rglob("*.png")):
            zf.write(f, f.relative_to(tmp_path / "d").as_posix())
    a = ImageFolderDataModule(root=str(tmp_path / "d"), **KW)
    b = ImageFolderDataModule(root=str(tmp_path / "d.zip"), **KW)
    a.setup("fit")
    b.setup("fit")
    assert torch.equal(a.splits["train"].images, b.splits["train"].images)


def test_corrupt_files_skipped_with_warning_or_error(tmp_path, caplog):
    write_folder(tmp_path, per_class=10)
    (tmp_path / "train" / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    dm = ImageFolderDataModule(root=str(tmp_path), **KW)
    with caplog.at_level("WARNING"):
        dm.setup("fit")
    assert sum(len(v) for v in dm.splits.values()) == 30
    assert "Skipping 1 unreadable image file(s)" in caplog.text and "broken.jpg" in caplog.text
    strict = ImageFolderDataModule(root=str(tmp_path), on_bad_image="error", **KW)
    with pytest.raises(ConfigError, match="1 unreadable image file.*broken.jpg"):
        strict.setup("fit")


def test_decoded_pixels_are_the_files_own_channel_first_in_memory_and_lazily(tmp_path):
    write_folder(tmp_path, per_class=4)
    cached = ImageFolderDataModule(root=str(tmp_path), **KW)
    lazy = ImageFolderDataModule(root=str(tmp_path), in_memory=False, **KW)
    cached.setup("fit")
    lazy.setup("fit")
    data = cached.splits["train"]
    on_demand = FileImageDataset(lazy.splits["train"], lambda: FolderSource(str(tmp_path)), 32)
    for i, (image, path) in enumerate(zip(data.images, data.paths)):
        want = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        assert torch.equal(image, want), path  # (3, H, W), each channel its own
        assert torch.equal(on_demand[i][0], want)


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_grayscale_and_rgba_become_rgb(tmp_path, mode):
    write_folder(tmp_path, per_class=10, mode=mode)
    dm = ImageFolderDataModule(root=str(tmp_path), **KW)
    dm.setup("fit")
    assert dm.splits["train"].images.shape[1] == 3


def test_missing_or_empty_data_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        ImageFolderDataModule(root=str(tmp_path / "nope"), **KW).setup("fit")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds none of train/, val/, test/"):
        ImageFolderDataModule(root=str(tmp_path / "empty"), **KW).setup("fit")
    write_folder(tmp_path / "d", per_class=3)
    (tmp_path / "d" / "train" / "ghost").mkdir()
    with pytest.raises(ConfigError, match=r"class folder\(s\) \['ghost'\]"):
        ImageFolderDataModule(root=str(tmp_path / "d"), **KW).setup("fit")


def zip_folder(folder: Path, out: Path, extra: dict[str, bytes] | None = None, dirs: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.rglob("*.png")):
            zf.write(f, f.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
        for d in dirs:
            zf.writestr(zipfile.ZipInfo(d), b"")  # a directory entry: "train/<class>/"
    return out


def test_a_file_a_broken_zip_or_a_truncated_zip_as_data_root_is_one_line(tmp_path):
    write_folder(tmp_path / "d", per_class=4)
    good = zip_folder(tmp_path / "d", tmp_path / "good.zip")
    (tmp_path / "cut.zip").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "fake.zip").write_bytes(b"these are not the bytes of a zip archive")
    (tmp_path / "notes.txt").write_text("a file")
    for name, words in [("cut.zip", "not a readable zip archive"), ("fake.zip", "not a readable zip archive"),
                        ("notes.txt", "is a file, not a folder or a .zip")]:
        with pytest.raises(ConfigError, match=words):
            ImageFolderDataModule(root=str(tmp_path / name), **KW).setup("fit")


def test_a_zip_member_with_a_crc_error_is_an_unreadable_image_not_a_traceback(tmp_path, caplog):
    write_folder(tmp_path / "d", per_class=4)
    path = zip_folder(tmp_path / "d", tmp_path / "crc.zip")
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("train/dog/001.png")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF  # one flipped byte inside the compressed member
    path.write_bytes(bytes(data))
    dm = ImageFolderDataModule(root=str(path), **{**KW, "val_size": 1, "test_size": 1})
    dm.setup("fit")
    assert "Skipping 1 unreadable image file(s): train/dog/001.png" in caplog.text
    with pytest.raises(ConfigError, match="1 unreadable image file"):
        ImageFolderDataModule(root=str(path), on_bad_image="error", **KW).setup("fit")


def test_a_zip_member_inflating_past_the_cap_is_not_read_into_memory(tmp_path, caplog, monkeypatch):
    import cifar_ft.data.folder_source as folder_source

    monkeypatch.setattr(folder_source, "MAX_MEMBER_BYTES", 100_000)  # the real cap is 64 MiB
    write_folder(tmp_path / "d", per_class=4)
    bomb = zip_folder(tmp_path / "d", tmp_path / "bomb.zip", {"train/eel/bomb.png": b"\0" * 10_000_000})
    assert bomb.stat().st_size < 100_000  # 10 MB of zeros deflate to ~10 KB
    ImageFolderDataModule(root=str(bomb), **{**KW, "val_size": 1, "test_size": 1}).setup("fit")
    assert "unreadable image file(s): train/eel/bomb.png" in caplog.text


def test_a_fifo_named_jpg_is_not_read_and_an_empty_class_in_a_zip_is_named(tmp_path):
    import os

    write_folder(tmp_path / "d", per_class=4)
    os.mkfifo(tmp_path / "d" / "train" / "cat" / "pipe.jpg")  # reading it would block forever
    dm = ImageFolderDataModule(root=str(tmp_path / "d"), **{**KW, "val_size": 1, "test_size": 1})
    dm.setup("fit")
    assert all("pipe.jpg" not in p for split in dm.splits.values() for p in split.paths)
    os.remove(tmp_path / "d" / "train" / "cat" / "pipe.jpg")
    path = zip_folder(tmp_path / "d", tmp_path / "empty_class.zip", dirs=("train/fox/",))
    with pytest.raises(ConfigError, match=r"class folder\(s\) \['fox'\] in train/ hold no images"):
        ImageFolderDataModule(root=str(path), **KW).setup("fit")


def test_a_class_whose_images_are_all_unreadable_is_refused_not_trained_with_no_examples(tmp_path):
    write_folder(tmp_path, per_class=4)
    for f in (tmp_path / "train" / "eel").iterdir():
        f.write_bytes(b"not an image")
    with pytest.raises(ConfigError, match=r"no readable image left in 1 class folder\(s\), e.g. .*eel"):
        ImageFolderDataModule(root=str(tmp_path), **KW).setup("fit")


def test_too_few_max_train_images_for_the_classes_is_named(tmp_path):
    """`data.max_train_images=2` with 3 classes: the key and the smallest valid value, not a hold-out
    size that names neither."""
    write_folder(tmp_path, per_class=10)
    dm = ImageFolderDataModule(root=str(tmp_path), max_train_images=2, **KW)
    with pytest.raises(ConfigError, match=r"data.max_train_images=2 is too few for 3 classes; valid: at least 6"):
        dm.setup("fit")
    ImageFolderDataModule(root=str(tmp_path), max_train_images=6, **{**KW, "val_size": 3, "batch_size": 2}).setup("fit")


def test_a_one_class_folder_is_named_first_not_its_batch_size(tmp_path):
    """With one class and few images the first error was `data.batch_size=... is larger than the training
    set`; the class count comes first, as a user fixes them."""
    write_folder(tmp_path, per_class=3, classes=("cat",))
    with pytest.raises(ConfigError, match=r"train/ holds 1 class folder\(s\) \(cat\); a classifier needs at least 2"):
        ImageFolderDataModule(root=str(tmp_path), **{**KW, "batch_size": 64}).setup("fit")
