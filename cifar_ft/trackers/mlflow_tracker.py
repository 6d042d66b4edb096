"""`logger=mlflow`: Lightning's MLFlowLogger, with the store a current MLflow accepts and a server that goes
away never costing the run.

- The default store is SQLite beside the runs (`sqlite:///<outputs>/mlflow.db`): MLflow made SQLite its default
  in 3.7 and refuses the old file store from about 3.14, which Lightning's default (`file:./mlruns`) is.
- A tracking server is asked once before the run (`check`): one that does not answer is one line.
- `GuardedMLFlowLogger`: a request that fails mid-run is said once; the run goes on and keeps its own files.
- In a sweep, the jobs are child runs of one parent run per sweep directory (`parent_run`).
"""
from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from lightning.pytorch.loggers import MLFlowLogger

from cifar_ft.errors import ConfigError
from cifar_ft.trackers.config import MLFLOW_PARENT_FILE as PARENT_FILE
from cifar_ft.trackers.config import MLflowOptions

log = logging.getLogger("cifar_ft")
ARTIFACTS = ("*.png", "metrics.json", "per_class.csv", "robustness.csv")


def default_uri(output_dir: Path) -> str:
    """sqlite:///<the run directory's nearest `outputs` ancestor, else its parent>/mlflow.db"""
    here = output_dir.resolve()
    root = next((p for p in here.parents if p.name == "outputs"), here.parent)
    return f"sqlite:///{root / 'mlflow.db'}"


def check(options: MLflowOptions) -> None:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError("logger=mlflow needs MLflow, which is not installed: pip install -e '.[mlflow]'") from None
    uri = options.tracking_uri or ""
    if uri.startswith("file:") or (uri and "://" not in uri):
        raise ConfigError(f"logger.mlflow.tracking_uri={uri!r}: MLflow's file store is refused by current MLflow; "
                          "use sqlite:///path/mlflow.db, http://host:port, or null (SQLite beside the runs)")
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=options.timeout_s) as reply:
                reply.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConfigError(f"logger.mlflow.tracking_uri={uri!r}: no MLflow server answers there ({reason}); "
                              "start one (mlflow server ...) or leave it null for a SQLite store beside the "
                              "runs") from None


class GuardedMLFlowLogger(MLFlowLogger):
    """MLFlowLogger whose requests may fail without failing the run: the first failure is logged once,
    later calls do nothing. Checkpoints, metrics.json and TensorBoard are written by the run, not here."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gone = False

    def _guard(self, what: str, call, *args, **kwargs):
        if self.gone:
            return None
        try:
            return call(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure of the tracker: the run's own files are safe
            self.gone = True
            log.warning("logger=mlflow: %s failed (%s: %s); nothing more is sent to %s. The run goes on, and its "
                        "own files (checkpoints, metrics.json, tensorboard/) are unaffected", what,
                        type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "", self._tracking_uri)
            return None

    def log_hyperparams(self, params) -> None:
        self._guard("logging the config", self._log_params, params)

    def _log_params(self, params) -> None:
        """A resumed run continues an MLflow run that has its params already, and MLflow refuses to change a
        param: keys it has keep their first value, a changed one (`ckpt_path`, a longer `trainer.max_epochs`)
        is kept as the tag `resumed.<key>`."""
        if self._run_id is None:
            return super().log_hyperparams(params)
        logged = self.experiment.get_run(self._run_id).data.params
        fresh = {k: v for k, v in dict(params).items() if k not in logged}
        for key, value in dict(params).items():
            if key in logged and str(value)[:6000] != logged[key]:
                self.experiment.set_tag(self._run_id, f"resumed.{key}"[:250], str(value)[:5000])
        if fresh:
            super().log_hyperparams(fresh)

    def log_metrics(self, metrics, step=None) -> None:
        self._guard("logging metrics", super().log_metrics, metrics, step)

    def finalize(self, status: str = "success") -> None:
        self._guard("closing the run", super().finalize, status)

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        self._guard("logging a checkpoint", super().after_save_checkpoint, checkpoint_callback)


def _limit_requests(timeout_s: int) -> None:
    # MLflow retries a request 7 times with backoff by default (minutes per call against a dead server)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout_s))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")


def build(options: MLflowOptions, run) -> GuardedMLFlowLogger:
    _limit_requests(options.timeout_s)
    uri = options.tracking_uri or default_uri(run.output_dir)
    tags = dict(run.tags)
    if run.sweep_dir is not None and "mlflow" not in run.resume_ids:
        tags.update({"mlflow.parentRunId": parent_run(uri, options.experiment_name, run.sweep_dir),
                     "trial": str(run.job)})
    return GuardedMLFlowLogger(experiment_name=options.experiment_name, tracking_uri=uri, tags=tags,
                               run_name=run.output_dir.name, run_id=run.resume_ids.get("mlflow"))


def run_id(logger: GuardedMLFlowLogger) -> str | None:
    return logger._guard("creating the run", lambda: logger.run_id)


def _experiment_id(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:  # noqa: BLE001 - another worker created it first
        return client.get_experiment_by_name(name).experiment_id


def parent_run(uri: str, experiment: str, sweep_dir: Path) -> str:
    """The id of the sweep's parent run: made by the first job to get here (an exclusive lock file), read by
    the others from `<sweep dir>/mlflow_parent_run.json`."""
    from mlflow.tracking import MlflowClient

    record, lock = sweep_dir / PARENT_FILE, sweep_dir / (PARENT_FILE + ".lock")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        for _ in range(300):  # the job that took the lock writes the record within a request or two
            if record.is_file():
                return json.loads(record.read_text())["run_id"]
            time.sleep(0.1)
        raise ConfigError(f"{lock} exists but no parent run was recorded in {record}; remove the lock") from None
    client = MlflowClient(uri)
    parent = client.create_run(_experiment_id(client, experiment), run_name=f"sweep {sweep_dir.name}",
                               tags={"cifar_ft.sweep_dir": str(sweep_dir)})
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps({"run_id": parent.info.run_id, "tracking_uri": uri}))
    tmp.replace(record)
    return parent.info.run_id


def finish(options: MLflowOptions, logger: GuardedMLFlowLogger, output_dir: Path, facts: dict) -> None:
    """The run's figures, metrics.json, per-class table, model card and (asked for) best checkpoint as
    artifacts; a sweep job's objective and state as tags."""
    def upload() -> None:
        client, rid = logger.experiment, logger.run_id
        for pattern in ARTIFACTS:
            for path in sorted(output_dir.glob(pattern)):
                client.log_artifact(rid, str(path))
        if facts.get("model_card"):
            client.log_text(rid, facts["model_card"], "model_card.md")
        if options.log_checkpoint and facts.get("best_ckpt"):
            client.log_artifact(rid, facts["best_ckpt"], "checkpoints")
        for key in ("objective", "state"):
            if facts.get(key) is not None:
                client.set_tag(rid, key, str(facts[key]))

    logger._guard("uploading the run's files", upload)


def close_parent(sweep_dir: Path, files: list[Path], state: str = "FINISHED") -> bool:
    """At the end of a sweep: its summary files onto the parent run, which is then closed. False when the
    sweep had no MLflow parent."""
    record = sweep_dir / PARENT_FILE
    if not record.is_file():
        return False
    from mlflow.tracking import MlflowClient

    info = json.loads(record.read_text())
    client = MlflowClient(info["tracking_uri"])
    for path in files:
        if path.is_file():
            client.log_artifact(info["run_id"], str(path))
    client.set_terminated(info["run_id"], state)
    return True
