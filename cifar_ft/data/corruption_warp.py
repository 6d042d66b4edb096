"""`elastic_transform` of CIFAR-10-C: a random affine warp (cv2.getAffineTransform + cv2.warpAffine,
bilinear, BORDER_REFLECT_101), then a smooth random displacement field (skimage Gaussian of uniform
noise, mode `reflect`) applied by scipy's map_coordinates (order 1, mode `reflect`), batched."""
from __future__ import annotations

import torch

from cifar_ft.data.corruption_ops import bilinear_sample, gaussian_filter

# OpenCV up to 4.x (which made CIFAR-10-C) interpolates warpAffine at source coordinates rounded to
# 1/32 pixel (INTER_BITS = 5); OpenCV 5 interpolates exactly (None here).
SUBPIXEL_STEPS: int | None = 32


def affine_from_points(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """cv2.getAffineTransform: the (B, 2, 3) M with dst_i = M [src_i, 1] for three (x, y) point pairs."""
    a = torch.cat([src, torch.ones_like(src[..., :1])], -1)  # (B, 3, 3)
    return torch.linalg.solve(a, dst).transpose(1, 2)


def warp_affine(x: torch.Tensor, m: torch.Tensor, steps: int | None = None) -> torch.Tensor:
    """cv2.warpAffine(x, M, (W, H)) with INTER_LINEAR and BORDER_REFLECT_101: dst(p) = src(M^-1 p),
    source coordinates rounded to 1/`steps` pixel (default SUBPIXEL_STEPS) as OpenCV's fixed-point path does."""
    b, _, h, w = x.shape
    full = torch.cat([m, torch.tensor([0.0, 0.0, 1.0], dtype=m.dtype).expand(b, 1, 3)], 1)
    inv = torch.linalg.inv(full)[:, :2]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=m.dtype), torch.arange(w, dtype=m.dtype), indexing="ij")
    grid = torch.stack([xs, ys, torch.ones_like(xs)], 0).reshape(3, -1)
    src = (inv @ grid).reshape(b, 2, h, w)
    steps = SUBPIXEL_STEPS if steps is None else steps
    if steps:
        src = torch.round(src * steps) / steps
    pad = int((src - grid[:2].reshape(2, h, w)).abs().max().ceil()) + 2  # covers the largest shift
    return bilinear_sample(x, src[:, 1].to(x.device), src[:, 0].to(x.device), pad, "reflect101")


def elastic(x: torch.Tensor, severity: int, draw) -> torch.Tensor:
    """CIFAR-10-C's elastic_transform of uint8 images (B, 3, H, W); `draw`: data/corruptions.Draws."""
    b, _, h, w = x.shape
    size = 32  # the reference's IMSIZE: its parameters are in CIFAR pixels
    alpha, sigma, affine = [(size * 0, size * 0, size * 0.08), (size * 0.05, size * 0.2, size * 0.07),
                            (size * 0.08, size * 0.06, size * 0.06), (size * 0.1, size * 0.04, size * 0.05),
                            (size * 0.1, size * 0.03, size * 0.03)][severity - 1]
    y = (x.double() / 255).float()  # float32, as the reference
    centre = torch.tensor([float(h // 2), float(w // 2)], dtype=torch.float64)  # np.float32(shape) // 2
    square = min(h, w) // 3
    pts1 = torch.stack([centre + square, torch.stack([centre[0] + square, centre[1] - square]), centre - square])
    pts1 = pts1.float().double().expand(b, 3, 2)
    fields = []
    for _ in range(b):  # per image, the reference's order: affine jitter, then dx, then dy
        jitter = draw.uniform(-affine, affine, (3, 2)).cpu().float().double()
        dx, dy = draw.uniform(-1, 1, (h, w)), draw.uniform(-1, 1, (h, w))
        fields.append((jitter, dx, dy))
    jitter = torch.stack([f[0] for f in fields])
    m = affine_from_points(pts1, (pts1 + jitter).float().double())
    y = warp_affine(y, m)
    noise = torch.stack([torch.stack([f[1], f[2]]) for f in fields]).to(x.device)  # (B, 2, H, W)
    disp = (gaussian_filter(noise, sigma, mode="reflect", truncate=3) * alpha).float()
    rows = torch.arange(h, device=x.device).view(1, h, 1) + disp[:, 1].double()
    cols = torch.arange(w, device=x.device).view(1, 1, w) + disp[:, 0].double()
    out = bilinear_sample(y.double(), rows, cols, max(h, w) // 2, "reflect")
    return (out.clamp(0, 1) * 255).floor().to(torch.uint8)
