"""Pictures of the mistakes: mistakes.png in every training and eval run, `predict explain=true`
overlays, and the Grad-CAM layer found for CNNs and ViTs."""
from __future__ import annotations

import torch
from PIL import Image

from cifar_ft.data.synthetic import synthetic_images
from cifar_ft.eval import evaluate
from cifar_ft.models.factory import build_classifier
from cifar_ft.predict import predict
from cifar_ft.reports.explain import activation_maps, cam_layer
from tests.conftest import make_cfg


def test_every_run_draws_its_most_confident_mistakes(smoke_run, tmp_path):
    with Image.open(smoke_run / "mistakes.png") as img:  # 16 panels, 4 x 4, at 100 dpi
        assert img.format == "PNG" and img.size == (1200, 1360)
    evaluate(make_cfg([f"ckpt_path={smoke_run}/checkpoints/last.ckpt"], tmp_path / "e", "eval"))
    with Image.open(tmp_path / "e" / "mistakes.png") as img:
        assert img.size == (1200, 1360)


def test_predict_explain_writes_one_overlay_per_image(smoke_run, tmp_path):
    data = synthetic_images(3, 10, 32, seed=0, split_offset=1)
    paths = []
    for i, img in enumerate(data.images):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(paths[-1])
    rows = predict(make_cfg([f"ckpt_path={smoke_run}/checkpoints/last.ckpt", f"inputs=[{','.join(map(str, paths))}]",
                             "explain=true"], tmp_path / "p", "predict"))
    written = sorted((tmp_path / "p" / "explain").iterdir())
    assert [p.name for p in written] == ["0000_img0.png", "0001_img1.png", "0002_img2.png"]
    for path, row in zip(written, rows):
        with Image.open(path) as img:
            assert img.size == (32, 32) and img.mode == "RGB"
            assert img.text["prediction"].split()[0] == row["top_k"][0]["class"]


def test_the_explained_layer_is_the_last_feature_map_or_the_last_vit_block():
    torch.manual_seed(0)  # random models: with some draws a class's Grad-CAM map is all zero (ReLU)
    cnn = build_classifier(backbone="test_resnet", num_classes=4, pretrained=False, input_size=32).eval()
    layer, reshape = cam_layer(cnn, 32)
    assert reshape is None and layer in set(cnn.backbone.modules())
    vit = build_classifier(backbone="vit_tiny_patch16_224", num_classes=4, pretrained=False, input_size=64).eval()
    layer, reshape = cam_layer(vit, 64)
    assert layer is vit.backbone.blocks[-1].norm1
    assert reshape(torch.zeros(2, 1 + 16, 192)).shape == (2, 192, 4, 4)  # class token dropped, 4 x 4 grid
    vpt = build_classifier(backbone="vit_tiny_patch16_224", num_classes=4, pretrained=False, input_size=64,
                          strategy={"name": "vpt", "tokens": 5}).eval()
    layer, reshape = cam_layer(vpt, 64)  # class token, then 5 prompts, then the 4 x 4 patches
    assert layer is list(vpt.backbone.blocks.children())[-1].norm1
    tokens = torch.arange(2 * 22 * 1, dtype=torch.float32).reshape(2, 22, 1)
    assert torch.equal(reshape(tokens)[:, 0].reshape(2, 16), tokens[:, 6:, 0])  # prompts dropped too
    x = torch.randn(2, 3, 64, 64)
    for model in (cnn, vit):
        size = 32 if model is cnn else 64
        maps = activation_maps(model, x[:, :, :size, :size], [0, 1])
        assert maps.shape == (2, size, size) and maps.min() >= 0 and maps.max() <= 1 + 1e-6
        assert not torch.allclose(activation_maps(model, x[:1, :, :size, :size], [2]), maps[:1])


def test_mistakes_name_a_folder_image_by_its_file_and_others_by_index(tmp_path):
    """mistakes.png titles: `cat/0042.jpg` for an image folder's test image (a user can open it), `#7` else."""
    import torch

    from cifar_ft.data.images import ImageSet, TensorImageDataset
    from cifar_ft.reports.explain import image_name

    images, labels = torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1])
    named = TensorImageDataset(ImageSet(images, labels, [str(tmp_path / "test" / "cat" / "0042.jpg"), "dog/7.png"]))
    assert image_name(named, 0) == "cat/0042.jpg" and image_name(named, 1) == "dog/7.png"
    assert image_name(TensorImageDataset(ImageSet(images, labels)), 1) == "#1"
