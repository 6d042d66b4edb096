"""Run by test_step_cost.py as `python tests/e2e/step_cost_worker.py OUT [overrides]`: a DDP run on 2
CPU processes (Lightning re-runs this command line for rank 1), each rank counting its Python-level
collectives per training step into OUT/rank<R>.json."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cifar_ft.bench.probes import StepProbe  # noqa: E402
from cifar_ft.train import train  # noqa: E402
from tests.conftest import FAST, make_cfg  # noqa: E402

if __name__ == "__main__":
    out = Path(sys.argv[1])
    with StepProbe("collectives") as probe:
        cfg = make_cfg([*FAST, "trainer=ddp_cpu", "trainer.devices=2", *sys.argv[2:]], out)
        train(cfg)
    import torch.distributed as dist

    rank = dist.get_rank() if dist.is_initialized() else 0
    rows = [{"epoch": s.epoch, "batch": s.batch, "global_step": s.global_step, "periodic": s.periodic,
             "calls": dict(s.calls), "sizes": s.sizes} for s in probe.steps]
    (out / f"rank{rank}.json").write_text(json.dumps(rows))
