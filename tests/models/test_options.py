"""The classifier's grouped options: one table from the model node's keys to the groups, the groups'
defaults are the schema's, and checkpoints written with the flat keys still load and give the same outputs."""
from __future__ import annotations

import inspect
from dataclasses import MISSING, fields

import pytest
import torch

from cifar_ft.errors import ConfigError
from cifar_ft.models.classifier import ImageClassifier
from cifar_ft.models.config import ModelOptions
from cifar_ft.models.factory import build_classifier
from cifar_ft.models.options import FLAT, GROUPS, flat_hparams, group_options, grouped_hparams
from cifar_ft.runs.checkpoints import load_classifier
from cifar_ft.runs.stored import check_checkpoint
from cifar_ft.schema import knobs

# Exactly what ImageClassifier saved before its options were grouped (a smoke run's last.ckpt, class
# names shortened to three): the form older checkpoints on users' disks hold.
LEGACY = {"backbone": "test_resnet", "num_classes": 3, "pretrained": False, "source": "timm", "input_size": 32,
          "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "batch_size": 64, "head_dropout": 0.0,
          "head_init": "trunc_normal", "drop_path_rate": 0.0, "backbone_lr_mult": 1.0, "layer_decay": None,
          "label_smoothing": 0.1, "class_names": ["cat", "dog", "frog"], "compile": False, "compile_mode": "default",
          "compile_backend": "inductor", "channels_last": True, "tta": "none", "small_checkpoints": True,
          "test_input_size": None, "backprop_fraction": 1.0, "strategy": {"name": "full"}}


def test_every_model_key_has_one_place_in_one_group():
    assert set(FLAT) == {f.name for f in knobs(ModelOptions)}  # a new model knob needs its group
    targets = list(FLAT.values())
    assert len(set(targets)) == len(targets)
    assert set(targets) == {(g, f.name) for g, kind in GROUPS.items() for f in fields(kind)}


def test_group_defaults_are_the_schemas():
    schema = ModelOptions(backbone="x")
    for key, (group, name) in FLAT.items():
        spec = {f.name: f for f in fields(GROUPS[group])}[name]
        if spec.default is MISSING:  # the backbone's name: required
            continue
        expected = getattr(schema, key)
        assert spec.default == (tuple(expected) if isinstance(expected, list) else expected), key


def test_the_classifier_takes_groups_not_flat_arguments():
    params = set(inspect.signature(ImageClassifier.__init__).parameters) - {"self"}
    assert set(GROUPS) <= params
    assert not params & (set(FLAT) - set(GROUPS)), "a model key is a constructor argument again"
    assert len(params) <= 12


def test_an_unknown_model_key_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="model.input_sise is not a model option"):
        group_options({"backbone": "test_resnet", "input_sise": 32})


def test_flat_and_grouped_hyperparameters_map_both_ways():
    grouped = grouped_hparams(LEGACY)
    assert grouped["inputs"]["size"] == 32 and grouped["backbone"]["name"] == "test_resnet"
    assert flat_hparams(grouped) == LEGACY
    assert grouped_hparams(grouped) == grouped


def test_a_checkpoint_with_the_older_flat_hyperparameters_loads_with_the_same_outputs(tmp_path):
    model = build_classifier(backbone="test_resnet", num_classes=3, class_names=["cat", "dog", "frog"],
                             pretrained=False, input_size=32, mean=[0.5] * 3, std=[0.5] * 3, batch_size=64,
                             backbone_lr_mult=1.0).eval()
    assert flat_hparams(dict(model.hparams)) == LEGACY  # what the model saves, read flat, is the old form
    path = tmp_path / "legacy.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": LEGACY,
                "pytorch-lightning_version": "2.5.0"}, path)
    old = torch.load(path, weights_only=True)
    check_checkpoint(old, "legacy")  # the safety checks accept the older form
    loaded = load_classifier(str(path)).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded.options == model.options


def test_a_group_holding_a_field_it_lacks_is_refused():
    model = build_classifier(backbone="test_resnet", num_classes=3, pretrained=False, input_size=32)
    hparams = {**dict(model.hparams), "inputs": {**model.hparams["inputs"], "sise": 32}}
    with pytest.raises(ConfigError, match="its inputs options hold 'sise'"):
        check_checkpoint({"hyper_parameters": hparams, "state_dict": {}}, "ckpt")
