"""The `params` grammar as Optuna distributions, and the sweeper's settings checked in one line."""
from __future__ import annotations

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from cifar_ft.errors import ConfigError
from cifar_ft.sweeps.space import search_space
from cifar_ft.sweeps.sweeper import Settings
from cifar_ft.sweeps.trial import make_pruner


def test_grammar_maps_to_optuna_distributions():
    space = search_space({"optimizer.lr": "tag(log, interval(1e-5, 3e-3))", "a": "interval(0.0, 0.2)",
                          "b": "interval(1, 8)", "c": "range(0, 6, 2)", "d": "choice(adam, sgd)", "e": "x,y",
                          "f": "7"}, ["g=3", "a=interval(0.1, 0.3)"])
    d = space.distributions
    assert d["optimizer.lr"] == FloatDistribution(1e-5, 3e-3, log=True)
    assert d["a"] == FloatDistribution(0.1, 0.3)  # the command line wins over hydra.sweeper.params
    assert d["b"] == FloatDistribution(1.0, 8.0)  # Hydra's intervals are floats: integers come from range
    assert d["c"] == IntDistribution(0, 4, step=2)  # range's stop is exclusive, as in Python
    assert d["d"] == CategoricalDistribution(["adam", "sgd"])
    assert d["e"] == CategoricalDistribution(["x", "y"])
    assert space.fixed == ["f=7", "g=3"]
    assert space.overrides({"optimizer.lr": 1.2345678901234567e-4, "d": "sgd"}) == [
        "f=7", "g=3", "optimizer.lr=0.00012345678901234567", "d=sgd"]  # floats in full precision


@pytest.mark.parametrize(("settings", "message"), [
    ({"direction": "maximise"}, "hydra.sweeper.direction='maximise' is not valid; valid: maximize, minimize"),
    ({"n_trials": 0}, "hydra.sweeper.n_trials=0 is not valid"),
    ({"pruner": "medain"}, "hydra.sweeper.pruner='medain' is not valid; valid: none, median"),
    ({"direction": ["maximize", "minimize"]}, "name them in hydra.sweeper.objectives"),
    ({"direction": ["maximize", "minimize"], "objectives": ["val/acc_best", "fit_time_s"], "pruner": "median"},
     "Optuna prunes single-objective studies only"),
    ({"grace_period": 5}, "hydra.sweeper.grace_period=5 is not valid; valid: seconds >"),
    ({"n_trails": 3}, "hydra.sweeper.n_trails is not a setting of the Optuna sweeper"),
])
def test_bad_settings_fail_in_one_line(settings, message):
    with pytest.raises(ConfigError, match=None) as err:
        Settings.parse({"storage": "sqlite:///x.db", **settings})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_pruners_take_only_their_own_arguments():
    args = {"n_startup_trials": 2, "n_warmup_steps": 1, "min_resource": 1, "max_resource": "auto",
            "reduction_factor": 3}
    assert make_pruner("median", args)._n_startup_trials == 2
    assert type(make_pruner("hyperband", args)).__name__ == "HyperbandPruner"
    assert type(make_pruner("successive_halving", args)).__name__ == "SuccessiveHalvingPruner"
    assert type(make_pruner("none", args)).__name__ == "NopPruner"
