"""Hydra plugins of cifar_ft, installed as the package `hydra_plugins.cifar_ft` (pyproject.toml,
`package-dir`): Hydra instantiates sweepers only from the `hydra_plugins` namespace. The plugin classes
are thin; what they do lives in `cifar_ft.sweeps`."""
