"""A bench runs on the images it is given (`--data`) and on nothing else: without them, or with a path that
holds no train/<class>/ images, it is one line and exit 2 before anything runs."""
from __future__ import annotations

import pytest
from PIL import Image

from cifar_ft.bench.common import data_root


@pytest.mark.parametrize("given,said", [(None, "no data given: pass --data DIR_OR_ZIP"),
                                        ("/nonexistent/cifar.zip", "/nonexistent/cifar.zip")])
def test_no_data_is_one_line_and_exit_2(given, said, capsys):
    with pytest.raises(SystemExit) as info:
        data_root(given)
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith("error: ") and said in err and "\n" not in err


def test_an_image_folder_is_used_as_given(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "train" / cls / "0.jpg")
    assert data_root(str(tmp_path)) == str(tmp_path)
