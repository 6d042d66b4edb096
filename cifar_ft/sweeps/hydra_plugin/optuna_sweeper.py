"""`hparams_search=optuna`: a Hydra sweeper on Optuna >= 4 (ask-and-tell), for one worker or many.

Configured by `conf/hydra/sweeper/optuna.yaml`; the search itself is `cifar_ft.sweeps.sweeper`.
Imported as `hydra_plugins.cifar_ft.optuna_sweeper` (Hydra takes sweepers only from that namespace).
"""
from __future__ import annotations

from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    """Hydra's side of the search: the launcher, the config, the command line's overrides."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings  # the keys of conf/hydra/sweeper/optuna.yaml, less _target_
        self.config: DictConfig | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        from cifar_ft.sweeps.sweeper import run_search

        return run_search(self.config, self.launcher.launch, self.settings, arguments)


def register() -> None:
    """Make the class known to Hydra also where its plugin scan cannot see it (editable installs)."""
    Plugins.instance().register(OptunaSweeper)
