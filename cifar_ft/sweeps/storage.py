"""One Optuna study shared by every worker of a search: its storage, heartbeats and claims.

- Storage: an RDB URL (SQLite in the sweep directory by default; PostgreSQL/MySQL across machines),
  with Optuna's heartbeats on, so a trial whose worker died (SIGKILL, node lost) is found stale by
  any live worker and retried by Optuna's retry callback, in the job directory of the trial it
  retries.
- Claims: the worker running trial N holds an exclusive lock on `<sweep dir>/.trials/N.lock` for the
  trial's whole run. The kernel drops the lock when the process dies, so a worker on the same machine
  (or the next run of the command) takes a dead trial over at once, keeping its number, instead of
  waiting for the heartbeat's grace period; the lock makes that take-over happen exactly once.
- `<sweep dir>/.trials/ask.lock` makes "count the study, then ask" one step, so K workers end with
  exactly `n_trials` trials, not more.

Optuna 4.9 renamed the storage's `failed_trial_callback` to `heartbeat_stale_trial_callback` (and
`RetryFailedTrialCallback` to `RetryHeartbeatStaleTrialCallback`); both spellings are handled here.
"""
from __future__ import annotations

import contextlib
import fcntl
import inspect
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial

from cifar_ft.errors import ConfigError

log = logging.getLogger("cifar_ft")
WORKER_ATTR = "cifar_ft:worker"  # system attr: "host:pid" of the worker running the trial
JOB_ATTR = "cifar_ft:job"        # system attr: the job directory number the trial runs in


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


BACKENDS = ("sqlite", "postgresql", "mysql")
SPACE_ATTR = "cifar_ft:space"  # study user attr: the search space, as Optuna's distribution JSON
CONNECT_TIMEOUT_S = 10


def check_storage_url(url: object, sweep_dir: Path) -> None:
    """Refuse, before anything is written, a storage URL that cannot work: not an RDB URL, an unknown
    backend, a SQLite file that cannot be created or written, a server that does not answer within
    `CONNECT_TIMEOUT_S` (or whose driver is missing)."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    key = f"hydra.sweeper.storage={url!r}"
    try:
        parsed = make_url(str(url)) if isinstance(url, str) and "://" in url else None
    except Exception:  # noqa: BLE001 - sqlalchemy's ArgumentError for a malformed URL
        parsed = None
    if parsed is None or parsed.get_backend_name() not in BACKENDS:
        raise ConfigError(f"{key} is not valid; valid: an RDB URL of {', '.join(BACKENDS)}, e.g. "
                          "sqlite:///DIR/optuna.db or postgresql+psycopg://USER@HOST/DB")
    if parsed.get_backend_name() == "sqlite":
        return _check_sqlite_file(key, parsed.database)
    try:
        engine = create_engine(parsed, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
        with engine.connect():
            pass
    except ImportError as exc:
        raise ConfigError(f"{key}: {exc}; pip install -e \".[postgres]\" brings the PostgreSQL driver") from exc
    except Exception as exc:  # noqa: BLE001 - refused, unknown host, timeout, authentication
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise ConfigError(f"{key}: cannot connect ({first[0] if first else type(exc).__name__}); is the server up "
                          "and the URL right?") from exc


def _check_sqlite_file(key: str, database: str | None) -> None:
    import tempfile

    if not database or database == ":memory:":
        raise ConfigError(f"{key} names no database file; workers share a study through a file, e.g. "
                          "sqlite:///DIR/optuna.db")
    path = Path(database).expanduser()
    if path.exists():
        if not path.is_file() or not os.access(path, os.R_OK | os.W_OK):
            raise ConfigError(f"{key}: {path} is not a readable and writable file")
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    try:
        if not parent.is_dir():
            raise NotADirectoryError(parent)
        with tempfile.TemporaryFile(dir=parent):  # the only sure test of writability (root passes os.access)
            pass
    except OSError as exc:
        raise ConfigError(f"{key}: {path} cannot be created ({parent} is not a writable folder)") from exc


def check_space(url: str, study_name: str, space: dict) -> None:
    """A worker joining an existing study must search the study's own space: refused in one line, naming
    the first parameter that differs, before anything is written. A study that does not exist yet (or a
    SQLite file not yet made) passes."""
    from optuna.distributions import json_to_distribution

    if url.startswith("sqlite") and not Path(url.split(":///", 1)[-1]).expanduser().is_file():
        return
    storage = optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return
    recorded = storage.get_study_user_attrs(study_id).get(SPACE_ATTR)
    if isinstance(recorded, dict):
        try:  # JSON read as data: a distribution's own fields, nothing that could name code
            theirs = {str(k): json_to_distribution(v) for k, v in recorded.items()}
        except Exception as exc:  # noqa: BLE001 - not Optuna's distribution JSON
            raise ConfigError(f"study {study_name!r} ({url}) records a search space cifar_ft cannot read "
                              f"({type(exc).__name__}); use another study_name or hydra.sweep.dir") from exc
    else:  # a study made before the space was recorded: what its trials sampled
        theirs = {}
        for trial in storage.get_all_trials(study_id, deepcopy=False):
            theirs.update(trial.distributions)
    for name in sorted(set(theirs) | set(space)):
        if theirs and theirs.get(name) != space.get(name):
            raise ConfigError(f"hydra.sweeper.params: {name} is {_show(space.get(name))} here but "
                              f"{_show(theirs.get(name))} in study {study_name!r} ({url}); a worker must search the "
                              "study's own space: use the same params, or another study_name / hydra.sweep.dir")


def record_space(study: optuna.Study, space: dict) -> None:
    """Keep the search space with the study (first worker), for `check_space`."""
    from optuna.distributions import distribution_to_json

    if SPACE_ATTR not in study.user_attrs:
        study.set_user_attr(SPACE_ATTR, {k: distribution_to_json(v) for k, v in space.items()})


def _show(dist) -> str:
    return "absent" if dist is None else repr(dist)


def _engine_kwargs(url: str) -> dict:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True, "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}


def make_storage(url: str, heartbeat_interval: int, grace_period: int, max_retry: int) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage with heartbeats and retries of stale trials (SQLite waits up to 60 s for a
    lock held by another worker instead of failing)."""
    if not url or "://" not in url:
        raise ConfigError(f"hydra.sweeper.storage={url!r} is not valid; valid: an RDB URL, e.g. "
                          "sqlite:///DIR/optuna.db or postgresql+psycopg://USER@HOST/DB")
    params = inspect.signature(optuna.storages.RDBStorage).parameters
    retry_cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or \
        optuna.storages.RetryFailedTrialCallback
    callback_key = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in params \
        else "failed_trial_callback"
    engine_kwargs = _engine_kwargs(url)
    for attempt in range(5):  # workers starting together may race to create the tables
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                **{callback_key: retry_cls(max_retry=max_retry, inherit_intermediate_values=False)})
        except ImportError as exc:  # e.g. psycopg missing
            raise ConfigError(f"hydra.sweeper.storage={url!r}: {exc}; pip install -e \".[postgres]\" brings "
                              "the PostgreSQL driver") from exc
        except Exception as exc:  # noqa: BLE001 - a race on table creation, or the server is not up
            if attempt == 4:
                raise ConfigError(f"hydra.sweeper.storage={url!r} cannot be opened: {str(exc).splitlines()[0]}") \
                    from exc
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def open_study(storage, study_name: str, directions: list[str], sampler) -> optuna.Study:
    """Create the study, or join it when another worker (or an earlier run) made it."""
    for attempt in range(5):
        try:
            return optuna.create_study(storage=storage, study_name=study_name, directions=directions,
                                       sampler=sampler, load_if_exists=True)
        except optuna.exceptions.DuplicatedStudyError:  # created between our look and our insert
            if attempt == 4:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def job_number(trial: FrozenTrial) -> int:
    """The job directory of a trial: its own number, or for a retry that of the trial it retries."""
    def whole(value) -> bool:  # storage attrs are data: only a job number is taken as one
        return type(value) is int and value >= 0

    if whole(trial.system_attrs.get(JOB_ATTR)):
        return trial.system_attrs[JOB_ATTR]
    history = trial.system_attrs.get("retry_history")
    return history[0] if isinstance(history, list) and history and whole(history[0]) else trial.number


class Claims:
    """The per-trial locks of one sweep directory (see the module docstring)."""

    def __init__(self, sweep_dir: Path) -> None:
        self.dir = Path(sweep_dir) / ".trials"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.held: dict[int, int] = {}  # trial number -> file descriptor

    def claim(self, number: int) -> bool:
        """Take trial `number`'s lock without waiting; False when a live process holds it."""
        fd = os.open(self.dir / f"{number}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self.held[number] = fd
        return True

    def release(self, number: int) -> None:
        fd = self.held.pop(number, None)
        if fd is not None:
            os.close(fd)  # closing drops the lock

    @contextlib.contextmanager
    def asking(self) -> Iterator[None]:
        """Hold the sweep's ask lock (blocking): count-then-ask is one step across workers."""
        with open(self.dir / "ask.lock", "a+") as f:
            fcntl.lockf(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(f, fcntl.LOCK_UN)


class Heartbeat:
    """Records a trial's heartbeat every `interval` seconds while its job runs (Optuna's own thread
    does this only inside `study.optimize`, which ask-and-tell does not use)."""

    def __init__(self, storage, trial_id: int, interval: int) -> None:
        import threading

        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as exc:  # noqa: BLE001 - a storage hiccup must not end the trial
                log.warning("heartbeat of trial %d not recorded: %s", self.trial_id, exc)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
