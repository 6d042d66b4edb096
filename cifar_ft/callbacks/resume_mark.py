"""A resumed run says where it resumed: the epoch-level train metrics of the epoch a run resumed in cover
only the steps after the resume (the metric state of the steps before it is not in a checkpoint), so a
reader must be able to tell such an epoch from a whole one."""
from __future__ import annotations

import lightning as L


class MarkResume(L.Callback):
    """At train start of a resumed run (global step > 0): the TensorBoard scalar `train/resumed_at_step`
    (value and step: the step it resumed at, which curves.png draws as a line), and `resumed_at_steps` in
    metrics.json (the `RunFacts` contract), kept across several resumes in the checkpoints."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        if step > 0 and step not in self.steps:
            self.steps.append(step)
            for logger in trainer.loggers:
                logger.log_metrics({"train/resumed_at_step": float(step)}, step=step)

    def run_facts(self) -> dict:
        return {"resumed_at_steps": list(self.steps)} if self.steps else {}

    def state_dict(self) -> dict:
        return {"steps": list(self.steps)}

    def load_state_dict(self, state_dict: dict) -> None:
        """Merged with what `on_train_start` recorded: Lightning may restore callback states after that hook."""
        steps = state_dict.get("steps", [])
        loaded = [s for s in steps if type(s) is int] if isinstance(steps, list) else []  # data, checked
        self.steps = sorted(set(self.steps) | set(loaded))
