"""`hparams_search=optuna`, resumable: Hydra's Optuna sweeper with its study in the sweep directory.

The study is kept in `<hydra.sweep.dir>/optuna.db` (SQLite), and trial N runs in job directory N.
Re-running the same command with the same `hydra.sweep.dir` continues the search: trials that were
interrupted mid-run are launched again in their own job directories (where the job resumes from its
`last.ckpt`) and their results told to the study, then only the trials still missing are asked for.
The study then holds `hydra.sweeper.n_trials` finished trials, as if never interrupted.

Imported as `hydra_plugins.cifar_ft.optuna_resume` (Hydra takes sweepers only from that namespace);
Optuna itself is imported when the sweeper is built, not when the module is.
"""
from __future__ import annotations

import logging
from pathlib import Path

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

log = logging.getLogger("cifar_ft")


def _resumable_impl(**kwargs):
    import optuna
    from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl

    class ResumableOptunaSweeperImpl(OptunaSweeperImpl):
        def sweep(self, arguments: list[str]) -> None:
            Path(self.config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)  # where the storage file lives
            study = self._existing_study()
            if study is not None:
                for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                    self._finish_interrupted(study, trial)
                finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
                self.n_trials = max(0, self.n_trials - len(finished))
                self.job_idx = max((t.number for t in study.trials), default=-1) + 1  # job N <-> trial N
                log.info("resuming study %s: %d trials done, %d to go", self.study_name, len(finished),
                         self.n_trials)
            super().sweep(arguments)

        def _existing_study(self):
            if not self.storage:
                return None
            try:
                return optuna.load_study(study_name=self.study_name, storage=self.storage)
            except KeyError:  # a new study
                return None

        def _finish_interrupted(self, study, trial) -> None:
            """Launch a trial that was cut off again, with its own parameters, in its own job directory."""
            overrides = tuple(f"{k}={v}" for k, v in {**trial.params, **trial.user_attrs}.items())
            log.info("trial %d was interrupted: running it again in job directory %d", trial.number, trial.number)
            (ret,) = self.launcher.launch([overrides], initial_job_idx=trial.number)
            try:
                study.tell(trial.number, values=[float(ret.return_value)])
            except Exception as exc:  # noqa: BLE001 - a failed job: a failed trial, as the sweeper does
                log.warning("trial %d failed: %s", trial.number, exc)
                study.tell(trial.number, state=optuna.trial.TrialState.FAIL)

    return ResumableOptunaSweeperImpl(**kwargs)


class ResumableOptunaSweeper(OptunaSweeper):
    """Hydra's `OptunaSweeper`, with the resumable implementation above."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sweeper = _resumable_impl(**kwargs)


def register() -> None:
    """Make the class known to Hydra also where its plugin scan cannot see it (editable installs)."""
    from hydra.core.plugins import Plugins

    Plugins.instance().register(ResumableOptunaSweeper)
