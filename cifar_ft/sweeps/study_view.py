"""The study, readable: `study.json` (every trial's state, values, parameters and job directory; the
best trial or the Pareto front; parameter importances), `optimization_results.yaml` (the best trial),
and Optuna's own matplotlib figures: `optimization_history.png` (`pareto_front.png` for several
objectives) and `param_importances.png`. Written by each worker when it ends; `summary.md` shows it."""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from cifar_ft.sweeps.storage import job_number

log = logging.getLogger("cifar_ft")


def trial_row(t: FrozenTrial) -> dict:
    return {"number": t.number, "job": job_number(t), "state": t.state.name, "values": t.values,
            "params": t.params, "error": t.user_attrs.get("error"),
            "last_epoch": t.last_step, "retry_of": (t.system_attrs.get("retry_history") or [None])[0]}


def evaluator() -> optuna.importance.BaseImportanceEvaluator | None:
    """Optuna's default evaluator (None) where it runs: Optuna 5, or Optuna 4 with scikit-learn (its
    fANOVA needs it); else PED-ANOVA, which needs nothing more."""
    import importlib.util

    if int(optuna.__version__.split(".")[0]) >= 5 or importlib.util.find_spec("sklearn") is not None:
        return None
    return optuna.importance.PedAnovaImportanceEvaluator()


def importances(study: optuna.Study) -> dict[str, float]:
    """Optuna's parameter importances of the first objective; {} while too few trials vary."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2 or not any(t.params for t in complete):
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.importance.get_param_importances(study, evaluator=evaluator(),
                                                           target=lambda t: t.values[0])
    except (ValueError, RuntimeError) as exc:  # e.g. every trial sampled the same values
        log.info("no parameter importances: %s", exc)
        return {}


def write_study_view(study: optuna.Study, sweep_dir: Path, fixed: list[str]) -> dict:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    multi = len(study.directions) > 1
    best = (study.best_trials if multi else [study.best_trial]) if complete else []
    states = [t.state.name for t in trials]
    view = {"study_name": study.study_name, "directions": [d.name.lower() for d in study.directions],
            "states": {name: states.count(name) for name in sorted(set(states))},
            "best": [trial_row(t) for t in best], "importances": importances(study),
            "fixed_overrides": fixed, "trials": [trial_row(t) for t in trials]}
    tmp = sweep_dir / "study.json.tmp"
    tmp.write_text(json.dumps(view, indent=2) + "\n")
    tmp.replace(sweep_dir / "study.json")
    if best:
        results = {"name": "optuna", "best_params": best[0].params,
                   "best_value" if not multi else "best_values": best[0].values[0] if not multi else best[0].values}
        (sweep_dir / "optimization_results.yaml").write_text(yaml.safe_dump(results, sort_keys=False))
    write_figures(study, sweep_dir, bool(view["importances"]))
    return view


MIN_TRIALS_FOR_IMPORTANCES = 20  # below this, which parameter "mattered" is mostly which trials were drawn


def importance_caveat(trials: int) -> str:
    return (f"from {trials} trials only: importances are indicative (fewer than {MIN_TRIALS_FOR_IMPORTANCES} "
            "complete trials)")


def write_figures(study: optuna.Study, sweep_dir: Path, with_importances: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return
    multi = len(study.directions) > 1
    plots = {"pareto_front.png" if multi else "optimization_history.png":
             vis.plot_pareto_front if multi else vis.plot_optimization_history}
    if with_importances:
        plots["param_importances.png"] = lambda s: vis.plot_param_importances(
            s, evaluator=evaluator(), target=lambda t: t.values[0], target_name="first objective")
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    for name, plot in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib figures experimental
            ax = plot(study)
        figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        figure.set_size_inches(9, 5)
        if name == "param_importances.png" and complete < MIN_TRIALS_FOR_IMPORTANCES:
            figure.suptitle(importance_caveat(complete), color="tab:red", fontsize=9)
        figure.tight_layout()
        figure.savefig(sweep_dir / name, dpi=110)
        plt.close(figure)


def study_states(sweep_dir: Path) -> dict[int, str]:
    """Job directory -> the state of its latest trial, from `study.json` ({} without a study)."""
    path = Path(sweep_dir) / "study.json"
    trials = json.loads(path.read_text())["trials"] if path.is_file() else []
    return {t["job"]: t["state"] for t in sorted(trials, key=lambda t: t["number"])}


def study_markdown(sweep_dir: Path) -> str:
    """The study section of summary.md, from `study.json` (empty for sweeps without a study)."""
    path = Path(sweep_dir) / "study.json"
    if not path.is_file():
        return ""
    view = json.loads(path.read_text())
    states = ", ".join(f"{n} {name}" for name, n in view["states"].items())
    lines = ["", f"## Optuna study `{view['study_name']}` ({', '.join(view['directions'])})", "",
             f"Trials: {states}."]
    for b in view["best"]:
        params = " ".join(f"{k}={v}" for k, v in b["params"].items())
        lines += [f"Best trial: {b['number']} (job directory {b['job']}), values {b['values']}: {params}"]
    if view["importances"]:
        complete = view["states"].get("COMPLETE", 0)
        few = complete < MIN_TRIALS_FOR_IMPORTANCES
        caveat = [f"Parameter importances {importance_caveat(complete)}."] if few else []
        lines += ["", *caveat, "", "| parameter | importance |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in view["importances"].items()]
    lines += ["", "| trial | job | state | values | error |", "|---|---|---|---|---|"]
    lines += [f"| {t['number']} | {t['job']} | {t['state']} | {t['values'] or ''} | {t['error'] or ''} |"
              for t in view["trials"]]
    figures = [f for f in ("optimization_history.png", "pareto_front.png", "param_importances.png")
               if (Path(sweep_dir) / f).is_file()]
    if figures:
        lines += ["", " ".join(f"![{f}]({f})" for f in figures)]
    return "\n".join(lines) + "\n"
