"""One worker of an Optuna search (ask-and-tell): the loop behind `hparams_search=optuna`.

Any number of workers (the same command started K times, on one machine or many) share one study
through its storage and one sweep directory, and together run `n_trials` trials:

1. under the sweep's ask lock: fail trials whose heartbeat went stale (Optuna queues their retry),
   take over trials of dead workers on this machine (their lock is free), count the trials that use
   the budget, and ask for as many new ones as are missing (at most `n_jobs` at a time);
2. launch each trial in its job directory (trial N in directory N; a retry in the directory of the
   trial it retries, where the job resumes from `checkpoints/last.ckpt`), with its heartbeat on;
3. tell the study each trial's result: COMPLETE with its objective values, PRUNED, or FAIL with the
   job's error line;
4. when nothing is left to ask, wait while trials still run elsewhere (one may die and need a retry),
   then end; the summary then covers the whole study.

Under DDP (`trainer.devices=K`) only global rank 0 asks; the other ranks' processes (Lightning starts
them with the same command line) follow the trials rank 0 publishes (`follow`).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from cifar_ft.sweeps.space import SearchSpace
from cifar_ft.sweeps.storage import JOB_ATTR, WORKER_ATTR, Claims, Heartbeat, job_number, worker_id
from cifar_ft.sweeps.trial import LEADER_ENV, TRIAL_ENV, TrialResult, read_result

log = logging.getLogger("cifar_ft")
POLL_S = 2.0  # how often a worker with nothing to ask looks at the study again


@dataclass
class Planned:
    trial: FrozenTrial | optuna.Trial
    number: int
    job: int
    params: dict
    resumed: bool = False


@dataclass
class Worker:
    """A worker: `launch(overrides_list, initial_job_idx)` is the Hydra launcher's."""
    study: optuna.Study
    storage: optuna.storages.RDBStorage
    space: SearchSpace
    sweep_dir: Path
    launch: object
    n_trials: int
    n_jobs: int = 1
    heartbeat_interval: int = 10
    objectives: list[str] | None = None
    rerun_failed: bool = False
    results: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.claims = Claims(self.sweep_dir)
        self.me = worker_id()
        self.leader_file = self.sweep_dir / ".trials" / f"leader-{self.me.replace(':', '-')}.json"
        self.published: list[dict] = []

    def run(self) -> list:
        os.environ[LEADER_ENV] = str(self.leader_file)  # DDP ranks started by our jobs follow this file
        if self.rerun_failed:  # once per run of the command: a trial that fails again stays failed
            with self.claims.asking():
                self.queue_reruns(self.study.get_trials(deepcopy=False))
        try:
            while True:
                batch = self.plan()
                if batch:
                    self.run_batch(batch)
                elif self.running_elsewhere():
                    time.sleep(POLL_S)
                else:
                    return self.results
        finally:
            self.publish(done=True)

    # -- planning ----------------------------------------------------------------------------------
    def plan(self) -> list[Planned]:
        """The trials this worker runs next (see the module docstring, step 1)."""
        with self.claims.asking():
            optuna.storages.fail_stale_trials(self.study)
            trials = self.study.get_trials(deepcopy=False)  # one read: take-overs add no trial
            batch = self.take_over(trials)
            superseded = _superseded(trials)
            used = sum(1 for t in trials if t.number not in superseded)
            waiting = sum(1 for t in trials if t.state == TrialState.WAITING)
            for _ in range(max(0, min(self.n_jobs - len(batch), self.n_trials - used + waiting))):
                batch.append(self.ask())
        return batch

    def take_over(self, trials: list[FrozenTrial]) -> list[Planned]:
        """RUNNING trials of this machine whose worker died: their lock is free (we now hold it)."""
        host = self.me.split(":")[0]
        out = []
        for t in trials:
            owner = str(t.system_attrs.get(WORKER_ATTR, ""))
            if t.state == TrialState.RUNNING and owner.split(":")[0] == host and self.claims.claim(t.number):
                # a worker tells its trial's result before it frees the lock: read the state again now that we
                # hold it (the trials were read before), or a trial that just finished would be taken over
                if self.storage.get_trial(t._trial_id).state != TrialState.RUNNING:
                    self.claims.release(t.number)
                    continue
                log.info("trial %d lost its worker (%s): running it again in job directory %d",
                         t.number, owner, job_number(t))
                self.storage.set_trial_system_attr(t._trial_id, WORKER_ATTR, self.me)
                out.append(Planned(t, t.number, job_number(t), dict(t.params), resumed=True))
                if len(out) >= self.n_jobs:
                    break
        return out

    def queue_reruns(self, trials: list[FrozenTrial]) -> None:
        """`sweep.rerun_failed=true`: trials that failed on their own are queued again, in their directory."""
        superseded = _superseded(trials)
        for t in trials:
            if t.state == TrialState.FAIL and "error" in t.user_attrs and t.number not in superseded:
                self.study.add_trial(optuna.trial.create_trial(
                    state=TrialState.WAITING, params=t.params, distributions=t.distributions,
                    system_attrs={"cifar_ft:rerun_of": t.number, JOB_ATTR: job_number(t)}))

    def ask(self) -> Planned:
        trial = self.study.ask(fixed_distributions=self.space.distributions)
        frozen = self.storage.get_trial(trial._trial_id)
        if not self.claims.claim(trial.number):
            raise RuntimeError(f"trial {trial.number} was just asked but its lock is held")
        self.storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, self.me)
        return Planned(trial, trial.number, job_number(frozen), dict(trial.params))

    def running_elsewhere(self) -> bool:
        """Trials of other workers still running or queued: one may die and need a retry here."""
        states = (TrialState.RUNNING, TrialState.WAITING)
        return any(t.number not in self.claims.held for t in self.study.get_trials(deepcopy=False, states=states))

    # -- running -----------------------------------------------------------------------------------
    def run_batch(self, batch: list[Planned]) -> None:
        batch.sort(key=lambda p: p.job)
        for group in _contiguous(batch):
            overrides = [self.overrides(p) for p in group]
            for p, o in zip(group, overrides):
                self.publish(job=p.job, overrides=o)
                log.info("trial %d%s in job directory %d: %s", p.number, " (resumed)" if p.resumed else "",
                         p.job, " ".join(o[len(self.space.fixed):-1]))
            beats = [Heartbeat(self.storage, p.trial._trial_id, self.heartbeat_interval) for p in group]
            for beat in beats:
                beat.__enter__()
            try:
                returns = self.launch(overrides, initial_job_idx=group[0].job)
            finally:
                for beat in beats:
                    beat.__exit__()
            for p, ret in zip(group, returns):
                self.tell(p, read_result(ret, self.sweep_dir / str(p.job), self.objectives))
                self.claims.release(p.number)
            self.results.append(returns)

    def overrides(self, p: Planned) -> list[str]:
        return [*self.space.overrides(p.params), f"++hydra.job.env_set.{TRIAL_ENV}={p.number}"]

    def tell(self, p: Planned, result: TrialResult) -> None:
        if result.state == TrialState.FAIL and result.error:
            self.storage.set_trial_user_attr(p.trial._trial_id, "error", result.error)
        values = result.values if result.state == TrialState.COMPLETE else None
        self.study.tell(p.number, values=values, state=result.state, skip_if_finished=True)
        log.info("trial %d: %s%s", p.number, result.state.name,
                 f" {values}" if values else f" ({result.error})" if result.error else "")

    def publish(self, done: bool = False, **entry) -> None:
        """Tell this worker's DDP followers which job comes next (or that there is none)."""
        if entry:
            self.published.append(entry)
        tmp = self.leader_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"jobs": self.published, "done": done}))
        tmp.replace(self.leader_file)


def follow(launch, timeout_s: float = 24 * 3600) -> list:
    """A DDP rank > 0 of a trial: run, in order, the jobs its rank 0 publishes, with its very overrides."""
    leader_file, parent = Path(os.environ[LEADER_ENV]), os.getppid()
    results, done = [], 0
    start = time.time()
    while time.time() - start < timeout_s and os.getppid() == parent:  # our rank 0 is alive
        state = json.loads(leader_file.read_text()) if leader_file.is_file() else {"jobs": [], "done": False}
        if done < len(state["jobs"]):
            entry = state["jobs"][done]
            results.append(launch([entry["overrides"]], initial_job_idx=entry["job"]))
            done += 1
        elif state["done"]:
            break
        else:
            time.sleep(0.2)
    return results


def _superseded(trials: list[FrozenTrial]) -> set[int]:
    """Trials another trial replaces: stale ones retried by Optuna, failed ones re-run on request."""
    out: set[int] = set()
    for t in trials:
        history = t.system_attrs.get("retry_history")  # storage attrs are data: whole numbers only
        out.update(n for n in (history if isinstance(history, list) else []) if type(n) is int)
        if type(t.system_attrs.get("cifar_ft:rerun_of")) is int:
            out.add(t.system_attrs["cifar_ft:rerun_of"])
    return out


def _contiguous(batch: list[Planned]) -> list[list[Planned]]:
    """Runs of consecutive job numbers: a launcher numbers the jobs of one call consecutively."""
    groups: list[list[Planned]] = []
    for p in batch:
        if groups and p.job == groups[-1][-1].job + 1:
            groups[-1].append(p)
        else:
            groups.append([p])
    return groups

