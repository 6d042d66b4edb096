"""`data=synthetic`: generated images with learnable class structure, for offline smoke runs and tests."""
from __future__ import annotations

import torch

from cifar_ft.data.datamodule import ImageDataModule
from cifar_ft.data.images import ImageSet


def synthetic_images(num: int, num_classes: int, size: int, seed: int, noise: float = 0.35,
                     split_offset: int = 0) -> ImageSet:
    """Images with learnable class structure: each class is a smooth colour pattern, randomly
    shifted, flipped, brightness-scaled and noised per image (so it is not trivially separable)."""
    gen = torch.Generator().manual_seed(seed)  # class prototypes depend on `seed` only
    low = torch.rand(num_classes, 3, 4, 4, generator=gen)
    protos = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    gen.manual_seed(seed * 7919 + split_offset + 1)  # images differ per split
    labels = torch.arange(num) % num_classes
    labels = labels[torch.randperm(num, generator=gen)]
    shift = torch.randint(-size // 8, size // 8 + 1, (num, 2), generator=gen)
    imgs = protos[labels]
    imgs = torch.stack([torch.roll(im, (int(s[0]), int(s[1])), dims=(1, 2)) for im, s in zip(imgs, shift)])
    flip = torch.rand(num, generator=gen) < 0.5
    imgs[flip] = imgs[flip].flip(-1)
    imgs = imgs * (0.7 + 0.6 * torch.rand(num, 1, 1, 1, generator=gen))
    imgs = imgs + noise * torch.randn(imgs.shape, generator=gen)
    images = (imgs.clamp(0, 1) * 255).round().to(torch.uint8)
    return ImageSet(images, labels.long())


class SyntheticDataModule(ImageDataModule):
    """`train_size` images split into train/val by `val_size`, and `test_size` test images."""

    def __init__(self, num_classes: int = 10, image_size: int = 32, train_size: int = 2000,
                 test_size: int = 500, noise: float = 0.35, data_seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n_classes, self.image_size = int(num_classes), int(image_size)
        self.train_size, self.test_size, self.noise = int(train_size), int(test_size), noise
        self.data_seed = int(data_seed)  # fixes the classes, so eval on a fresh module sees the same task

    def _load(self):
        full = synthetic_images(self.train_size, self.n_classes, self.image_size, self.data_seed, self.noise, 0)
        test = synthetic_images(self.test_size, self.n_classes, self.image_size, self.data_seed, self.noise, 1)
        train, val = self.split_train_val(full)
        return train, val, test, [f"class_{i}" for i in range(self.n_classes)]
