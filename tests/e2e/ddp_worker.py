"""Run by test_ddp.py as `python tests/e2e/ddp_worker.py OUT [extra overrides]`; Lightning's DDP launcher
re-executes this same command line for rank 1 (2 CPU processes, gloo)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cifar_ft.train import train  # noqa: E402
from tests.conftest import FAST, make_cfg  # noqa: E402

if __name__ == "__main__":
    out = Path(sys.argv[1])
    overrides = [*FAST, "trainer.max_epochs=2", "strategy.frozen_epochs=1", "trainer.accelerator=cpu",
                 "trainer.devices=2", "trainer.strategy=ddp", "data.train_size=960",
                 "+callbacks.dump._target_=tests.helpers.DumpBackbone", f"+callbacks.dump.path={out}",
                 *sys.argv[2:]]
    train(make_cfg(overrides, out))
