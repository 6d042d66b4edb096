"""`python -m cifar_ft.bench.ddp_probe OUT {ours,bare} [overrides]`: one 2-rank DDP run on the CPU (gloo)
that counts each rank's Python-level collectives per training step into OUT/rank<R>.json. A module
of its own because Lightning's DDP launcher re-runs this very command line for rank 1."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from cifar_ft.backbones import create_backbone
from cifar_ft.bench.probes import StepProbe
from cifar_ft.runs.compose import compose_config
from cifar_ft.train import train


class BareModule(L.LightningModule):
    """The least a Lightning user writes: model, loss, one logged value, AdamW."""

    def __init__(self, name: str = "test_resnet", classes: int = 10) -> None:
        super().__init__()
        backbone = create_backbone(name, pretrained=False)
        self.net = torch.nn.Sequential(backbone, torch.nn.Linear(backbone.num_features, classes))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-3, fused=True)


def synthetic_loader(batches: int, batch: int, size: int) -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(batches * batch, 3, size, size, generator=gen), torch.randint(0, 10, (batches * batch,))
    return DataLoader(TensorDataset(x, y), batch_size=batch, drop_last=True)


def run_bare(out: Path, strategy: str, devices: int, steps: int, batch: int = 32, size: int = 32,
             name: str = "test_resnet") -> None:
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy=strategy, max_steps=steps, max_epochs=-1,
                        logger=L.pytorch.loggers.TensorBoardLogger(str(out), name="tensorboard", version=""),
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        log_every_n_steps=10)
    trainer.fit(BareModule(name), synthetic_loader(steps + 1, batch, size))


def main(argv: list[str]) -> None:
    out, kind, overrides = Path(argv[0]), argv[1], argv[2:]
    with StepProbe("collectives") as probe:
        if kind == "bare":
            run_bare(out, "ddp", 2, steps=18)
        else:
            train(compose_config(["experiment=smoke", "trainer=ddp_cpu", "trainer.devices=2",
                                  "trainer.enable_progress_bar=false", *overrides], out))
    rank = dist.get_rank() if dist.is_initialized() else 0
    rows = [{"periodic": s.periodic, "calls": dict(s.calls)} for s in probe.steps]
    (out / f"rank{rank}.json").write_text(json.dumps(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
