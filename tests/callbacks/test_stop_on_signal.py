"""StopOnSignal replaces a private method of Lightning's training loop: a rename must fail loudly."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop

from cifar_ft.callbacks.stop_on_signal import _LIGHTNING_SIGTERM_BROADCAST, StopOnSignal


def test_the_installed_lightning_still_has_the_method_we_replace():
    assert hasattr(_TrainingEpochLoop, _LIGHTNING_SIGTERM_BROADCAST)


def test_a_lightning_without_it_stops_a_ddp_run_with_a_clear_error(tmp_path):
    loop = SimpleNamespace()  # a loop of a Lightning that renamed the method
    trainer = SimpleNamespace(fit_loop=SimpleNamespace(epoch_loop=loop), world_size=2, log_every_n_steps=5,
                              global_step=0)
    with pytest.raises(RuntimeError, match="has no SimpleNamespace._broadcast_sigterm_tensor"):
        StopOnSignal(str(tmp_path)).on_train_start(trainer, None)
