"""The search space of `hparams_search=optuna`: the `params` grammar users write, parsed with Hydra's
own override parser, as Optuna distributions.

| grammar                          | Optuna distribution                                  |
|----------------------------------|------------------------------------------------------|
| `interval(a, b)`                 | FloatDistribution(a, b) (Hydra's intervals are floats) |
| `tag(log, interval(a, b))`       | the same with log=True                               |
| `range(a, b[, step])`            | IntDistribution(a, last value, step) (Categorical if not ints) |
| `choice(x, y, ...)` or `x,y,...` | CategoricalDistribution                              |
| a plain value                    | fixed: passed to every trial as it is                |

Entries come from `hydra.sweeper.params` and from the command line (the command line wins for a key
given in both).
"""
from __future__ import annotations

from dataclasses import dataclass

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from cifar_ft.errors import ConfigError


@dataclass
class SearchSpace:
    distributions: dict[str, BaseDistribution]  # sampled per trial, by override key
    fixed: list[str]                            # overrides every trial gets as they are

    def overrides(self, params: dict) -> list[str]:
        """The command-line overrides of one trial: the fixed ones, then its sampled values."""
        return [*self.fixed, *(f"{key}={_text(value)}" for key, value in params.items())]


def search_space(params: dict | None, arguments: list[str]) -> SearchSpace:
    """Parse `hydra.sweeper.params` (key -> grammar string) and the command line's overrides."""
    lines = [f"{key}={value}" for key, value in (params or {}).items()]
    parsed = OverridesParser.create().parse_overrides([*lines, *arguments])
    by_key: dict[str, Override] = {}
    for override in parsed:
        by_key[override.get_key_element()] = override  # later (command line) wins
    distributions, fixed = {}, []
    for key, override in by_key.items():
        if override.is_sweep_override():
            distributions[key] = distribution(override)
        else:
            fixed.append(override.input_line)
    return SearchSpace(distributions, fixed)


def distribution(override: Override) -> BaseDistribution:
    """One sweep override as an Optuna distribution (the table of the module docstring)."""
    key, value = override.get_key_element(), override.value()
    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep)
        return FloatDistribution(float(value.start), float(value.end), log="log" in value.tags)
    if override.is_range_sweep():
        assert isinstance(value, RangeSweep)
        values = list(override.sweep_iterator(transformer=Transformer.encode))
        if not values:
            raise ConfigError(f"hydra.sweeper.params: {key}={override.input_line.split('=', 1)[1]} is empty")
        if all(isinstance(v, int) for v in (value.start, value.stop, value.step)) and value.step > 0:
            return IntDistribution(int(value.start), int(values[-1]), step=int(value.step))
        return CategoricalDistribution(values)
    if override.is_choice_sweep():
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    raise ConfigError(f"hydra.sweeper.params: {override.input_line!r} is not valid; valid: interval(a, b), "
                      "tag(log, interval(a, b)), range(a, b[, step]), choice(x, y, ...) or a plain value")


def _text(value) -> str:
    """A sampled value as override text (floats in full precision: the trial is re-run exactly)."""
    return repr(value) if isinstance(value, float) else str(value)
