"""Hydra plugins of cifar_ft. Hydra instantiates sweepers only from the `hydra_plugins` namespace, so
this folder is also installed as `hydra_plugins.cifar_ft` (pyproject.toml, `package-dir`)."""
