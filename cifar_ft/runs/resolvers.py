"""Our OmegaConf resolvers, registered before any config of ours is composed or resolved
(`compose_config`, and each command at import: also joblib workers and DDP ranks)."""
from __future__ import annotations

from omegaconf import OmegaConf


def register_resolvers() -> None:
    """`${job_gpu:${hydra:job.num},K}`: job N of a parallel sweep gets GPU N mod K (one GPU per job);
    `${metric_mode:NAME}` / `${metric_direction:MODE}`: what "best" means for a metric;
    `${probe_epochs:${trainer.max_epochs}}`: the linear-probe phase of strategy=lp_ft;
    `${config_groups:}`: the user's choices per config group, for `--help`."""
    for name, fn in (("job_gpu", job_gpu), ("metric_mode", metric_mode), ("metric_direction", metric_direction),
                     ("probe_epochs", probe_epochs), ("config_groups", config_groups)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
    from cifar_ft.runs.schemas import register_schemas

    register_schemas()


# metric names (their last part) where smaller is better
SMALLER_IS_BETTER = ("loss", "nll", "ece", "mce", "brier", "error", "err", "time", "_s")  # _s: seconds


def metric_mode(metric: str) -> str:
    """`min` for losses, errors and times (`val/loss`, `test/ece`, `fit_time_s`), `max` otherwise."""
    last = str(metric).rsplit("/", 1)[-1].removesuffix("_best")
    return "min" if last.endswith(SMALLER_IS_BETTER) else "max"


def metric_direction(mode: str) -> str:
    """An Optuna direction for a checkpoint mode: max -> maximize, min -> minimize."""
    return {"max": "maximize", "min": "minimize"}.get(str(mode), str(mode))


def job_gpu(job_num: int | str, num_gpus: int | str) -> list[int]:
    return [int(job_num) % max(1, int(num_gpus))]


def probe_epochs(max_epochs: int | str) -> int:
    """Half the run, at least one epoch (LP-FT probes until the head has converged; with the feature
    cache those epochs cost one backbone pass in all)."""
    epochs = int(max_epochs)
    return max(1, epochs // 2) if epochs > 0 else 1


INTERNAL_CONFIGS = ("base", "_base", "schema")  # shared by a group's configs (in their defaults), not a choice


def config_groups() -> str:
    """`group: option, option` per line for the conf/ groups, as Hydra's `$APP_CONFIG_GROUPS` but
    without the shared base configs, which are not choices (`model=base` builds no model)."""
    from pathlib import Path

    conf = Path(__file__).resolve().parents[2] / "conf"
    lines = []
    for group in sorted(p for p in conf.iterdir() if p.is_dir() and p.name != "hydra"):
        options = sorted(f.stem for f in group.glob("*.yaml") if f.stem not in INTERNAL_CONFIGS)
        lines.append(f"{group.name}: {', '.join(options)}")
    return "\n".join(lines)
