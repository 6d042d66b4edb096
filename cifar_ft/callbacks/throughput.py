"""Training throughput, measured per epoch on the images actually fed to the model."""
from __future__ import annotations

import math
import time

import lightning as L
import torch

from cifar_ft.contracts import FinetunableModule, FrozenPhaseData


class TrainThroughput(L.Callback):
    """Logs `train/images_per_sec` per epoch (wall clock from the first to the last batch) and, on a
    GPU, `train/mfu`: achieved model FLOP/s over the device's measured bf16 matmul rate. Its
    `run_facts()` (the `RunFacts` contract) puts the last epoch's figures into metrics.json.

    Not Lightning's `ThroughputMonitor`: that one synchronises the GPU after every batch (a host
    wait per step) and takes the MFU denominator from a table of nominal peaks; this one syncs only
    at the epoch's first batch and end, and measures the device's matmul rate.
    """

    def __init__(self, mfu: bool = True) -> None:
        self.images = 0
        self.start: float | None = None
        self.last_images_per_sec: float | None = None
        self.mfu, self.last_mfu = mfu, None
        self.flops_per_image = self.peak_flops = None
        self._flops: dict[int, float | None] = {}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.images, self.start, self.flops_per_image = 0, None, None
        dm = trainer.datamodule
        cached = isinstance(dm, FrozenPhaseData) and bool(dm.cached_splits())  # head-only: no model FLOPs
        if self.mfu and pl_module.device.type == "cuda" and not cached and isinstance(pl_module, FinetunableModule):
            # recounted when the trainable set changes (the freeze schedule unfreezes layers)
            key = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
            if key not in self._flops:
                self._flops[key] = train_flops_per_image(pl_module, pl_module.input_size)
            self.flops_per_image = self._flops[key]
            if self.peak_flops is None:
                self.peak_flops = matmul_peak_flops(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.start is None:  # skip loader start-up and the first batch's fetch
            _sync(pl_module)
            self.start = time.perf_counter()
            self._skip_first = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if getattr(self, "_skip_first", False):
            self._skip_first = False
            _sync(pl_module)
            self.start = time.perf_counter()
            return
        self.images += int(batch[0].shape[0]) * trainer.world_size

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.start is None or self.images == 0:
            return
        _sync(pl_module)
        rate = self.images / max(time.perf_counter() - self.start, 1e-9)
        self.last_images_per_sec = rate
        pl_module.log("train/images_per_sec", rate, on_step=False, on_epoch=True, rank_zero_only=True)
        if self.flops_per_image and self.peak_flops:
            self.last_mfu = rate / trainer.world_size * self.flops_per_image / self.peak_flops
            pl_module.log("train/mfu", self.last_mfu, on_step=False, on_epoch=True, rank_zero_only=True)
            pl_module.log("train/flops_per_image", self.flops_per_image, on_step=False, on_epoch=True,
                          rank_zero_only=True)


    def run_facts(self) -> dict[str, float]:
        facts = {}
        if self.last_images_per_sec:
            facts["train/images_per_sec"] = self.last_images_per_sec
        if self.last_mfu:
            facts.update({"train/mfu": self.last_mfu, "train/flops_per_image": self.flops_per_image,
                          "device_bf16_matmul_flops": self.peak_flops})
        return facts


def _sync(pl_module: L.LightningModule) -> None:
    if pl_module.device.type == "cuda":
        torch.cuda.synchronize(pl_module.device)


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation,
                         _transposed, _output_padding, _groups, output_mask, out_shape=None) -> int:
    """grad_input and grad_weight each cost one forward conv; the weight shape (Cout, Cin/groups, k..)
    already accounts for groups (torch's own formula ignores them: 20x too high for depthwise convs)."""
    fwd = 2 * math.prod(grad_out_shape) * math.prod(w_shape[1:])
    return fwd * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def train_flops_per_image(model: FinetunableModule, input_size: int) -> float | None:
    """Forward + backward FLOPs for one image, counted by FlopCounterMode on a meta-device copy (no GPU
    work; parameters that are frozen get no weight gradient, as in training)."""
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    try:
        net = torch.nn.Sequential(copy.deepcopy(model.backbone), copy.deepcopy(model.head)).to("meta")
        x = torch.randn(2, 3, input_size, input_size, device="meta")
        counter = FlopCounterMode(display=False, custom_mapping={
            torch.ops.aten.convolution_backward: _conv_backward_flops})
        with counter:
            net(x).float().sum().backward()
    except Exception:  # noqa: BLE001 - an uncountable op: report no MFU rather than fail the run
        return None
    return counter.get_total_flops() / 2


def matmul_peak_flops(device: torch.device, n: int = 8192, reps: int = 10) -> float:
    """Measured bf16 matmul FLOP/s on `device` (the MFU denominator): n×n×n products after warm-up."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)
