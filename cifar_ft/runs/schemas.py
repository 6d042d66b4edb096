"""Every schema stored in Hydra's ConfigStore as `schema/<group>/<name>`, before any config of ours is
composed (`register_resolvers` calls `register_schemas`): conf/'s YAML options extend them."""
from __future__ import annotations

from cifar_ft.callbacks import config as _callbacks  # noqa: F401 - each module registers its schemas
from cifar_ft.data import config as _data  # noqa: F401
from cifar_ft.models import config as _models  # noqa: F401
from cifar_ft.runs import command_options as _commands  # noqa: F401
from cifar_ft.runs import config as _runs  # noqa: F401
from cifar_ft.schema import SCHEMAS
from cifar_ft.strategies import config as _strategies  # noqa: F401
from cifar_ft.trackers import config as _trackers  # noqa: F401


def register_schemas() -> None:
    """Once per process (every compose calls it through `register_resolvers`)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    if "schema" in store.repo:
        return
    for (group, name), cls in SCHEMAS.items():
        store.store(group=f"schema/{group}", name=name, node=cls)
