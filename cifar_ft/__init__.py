"""cifar_ft: fine-tune ImageNet-pretrained classifiers on CIFAR-10/100 and image folders.

Layers, top to bottom; each imports only from the layers below it (enforced by the import-linter
contracts in pyproject.toml, run by the test suite):

1. `bench`                            benchmarks that run the commands below
2. `train`, `eval`, `predict`, `sweep` the commands (`python -m cifar_ft.<name>`)
3. `runs`                             run plumbing: entry/one-line errors, building objects from the
                                      config, checkpoints, metrics.json, figures, sweep summaries
4. `callbacks` | `data` | `models`    Lightning parts, independent of each other: callbacks see the
                                      datamodule and the module only through `contracts`
5. `backbones`                        pretrained feature extractors (timm, torchvision, offline weights)
6. `contracts`, `errors`              leaves: Protocols between parts, and the user-facing errors
"""
