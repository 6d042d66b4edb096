"""Benchmarks (commands, not tests): `python -m cifar_ft.bench transfer|speed`."""
