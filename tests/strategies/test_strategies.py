"""Each fine-tuning strategy trains exactly what it says, and its config, registry and spec agree."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from cifar_ft.models.classifier import ImageClassifier
from cifar_ft.models.factory import build_classifier
from cifar_ft.runs.build import strategy_and_schedule
from cifar_ft.strategies import STRATEGIES, FinetuningStrategy, build_strategy
from cifar_ft.strategies.lora import LoRA
from cifar_ft.train import train
from tests.conftest import CONF_DIR, make_cfg
from tests.helpers import Weights

WEIGHTS = ["+callbacks.weights._target_=tests.helpers.Weights"]
SHORT = ["trainer.max_epochs=1", "data.train_size=128", "data.val_size=32", "data.test_size=32"]
VIT = ["model=vit_tiny", "model.pretrained=false", "model.input_size=32", "model.batch_size=32"]


def bn_keys(model_keys, *, stats: bool) -> set[str]:
    """State keys of test_resnet's BatchNorm layers (weights and biases, or running statistics)."""
    import timm

    net = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    names = [n for n, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    ends = ("running_mean", "running_var", "num_batches_tracked") if stats else ("weight", "bias")
    return {f"backbone.{n}.{e}" for n in names for e in ends} & set(model_keys)


def changed(cfg_factory, *overrides: str) -> set[str]:
    cfg = cfg_factory(*WEIGHTS, *SHORT, *overrides)
    train(cfg)
    return {k for k, v in Weights.start.items() if not torch.equal(v, Weights.end[k])}


def params(names: set[str], prefix: str = "backbone.") -> set[str]:
    return {n for n in names if n.startswith(prefix)}


HEAD = {"head.weight", "head.bias"}


def bn_buffers(keys) -> set[str]:
    return {k for k in keys if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
@pytest.mark.parametrize("strategy", ["linear_probe", "bitfit", "norm", "lora", "dora"])
def test_strategy_changes_exactly_its_parameters(cfg_factory, resnet_weights, strategy):
    """test_resnet (with BatchNorm): only the strategy's parameters and the head change; BatchNorm
    statistics stay bit-identical (only `norm`, which trains the BatchNorm layers, updates them)."""
    got = changed(cfg_factory, f"strategy={strategy}", f"model.pretrained={resnet_weights}")
    keys = set(Weights.start)
    backbone = {k for k in keys if k.startswith("backbone.") and k not in bn_buffers(keys)}
    want = {
        "linear_probe": set(),
        "bitfit": {k for k in backbone if k.endswith(".bias")},
        "norm": bn_keys(keys, stats=False) | bn_keys(keys, stats=True),
        "lora": {k for k in backbone if ".lora_" in k},
        "dora": {k for k in backbone if ".lora_" in k},
    }[strategy]
    assert want or strategy == "linear_probe"
    assert got == want | HEAD


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_partial_keeps_its_first_layer_groups_pretrained_statistics_included(cfg_factory, resnet_weights, precision):
    """strategy=partial: the first `frozen_groups` layer groups keep weights and BatchNorm statistics
    bit-identical, also when their forward runs in bf16; every other backbone tensor changes, as under `full`."""
    import timm

    from cifar_ft.backbones import layer_groups

    got = changed(cfg_factory, "strategy=partial", "strategy.frozen_groups=2", f"model.pretrained={resnet_weights}",
                  f"strategy.frozen_precision={precision}")
    frozen = {n for g in layer_groups(timm.create_model("test_resnet", num_classes=0))[:2] for n in g}
    modules = {n.rsplit(".", 1)[0] for n in frozen}  # their BatchNorm buffers stay too
    backbone = {k for k in Weights.start if k.startswith("backbone.")}
    kept = {k for k in backbone if k.removeprefix("backbone.").rsplit(".", 1)[0] in modules}
    assert frozen and {f"backbone.{n}" for n in frozen} <= kept < backbone
    assert got == (backbone - kept) | HEAD


def test_partial_refuses_a_count_that_freezes_nothing_or_everything():
    import timm

    from cifar_ft.errors import ConfigError
    from cifar_ft.strategies.selective import Partial

    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match=f"strategy.frozen_groups={bad!r} must be an integer >= 1"):
            Partial(frozen_groups=bad)
    net = timm.create_model("test_resnet", num_classes=0)
    with pytest.raises(ConfigError, match=r"frozen_groups=99 leaves nothing to train: this backbone has \d+ layer"):
        Partial(frozen_groups=99).trainable(net)


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_full_changes_every_backbone_tensor(cfg_factory):
    got = changed(cfg_factory, "strategy=full", "strategy.frozen_epochs=0")
    never = {"temperature"}  # set by calibrate=temperature after training, never by it
    assert got == set(Weights.start) - never - {k for k in Weights.start if k.startswith("backbone.") and
                                                 Weights.start[k].dtype == torch.long} | bn_buffers(Weights.start)


@pytest.mark.slow  # two ViT runs: ~15 s (the default suite keeps the test_resnet ones)
@pytest.mark.parametrize("strategy,marker", [("vpt", "blocks.prompt"), ("lora", ".lora_")])
def test_vit_strategy_changes_exactly_its_parameters(cfg_factory, strategy, marker):
    got = changed(cfg_factory, *VIT, f"strategy={strategy}")
    want = {k for k in Weights.start if k.startswith("backbone.") and marker in k}
    assert want and got == want | HEAD


def _built(cfg):
    return instantiate(strategy_and_schedule(cfg.strategy)[0])


def test_every_config_builds_its_registered_strategy():
    for path in sorted((Path(CONF_DIR) / "strategy").glob("*.yaml")):
        cfg = make_cfg([f"strategy={path.stem}"], Path("/tmp/unused"))
        strategy = _built(cfg)
        assert isinstance(strategy, FinetuningStrategy)
        assert strategy.name == path.stem and path.stem in STRATEGIES
        rebuilt = build_strategy(strategy.spec())  # what a checkpoint does
        assert type(rebuilt) is type(strategy) and rebuilt.spec() == strategy.spec()
    assert {p.stem for p in (Path(CONF_DIR) / "strategy").glob("*.yaml")} == set(STRATEGIES)


def test_schedules_the_strategies_imply():
    def schedule(*overrides):
        cfg = make_cfg([*overrides], Path("/tmp/unused"))
        return {**strategy_and_schedule(cfg.strategy)[1], "unfreeze": cfg.callbacks.freeze.unfreeze}

    assert schedule("strategy=linear_probe", "trainer.max_epochs=7")["freeze_epochs"] == 7
    assert schedule("strategy=lp_ft", "trainer.max_epochs=6")["freeze_epochs"] == 3
    assert schedule("strategy=gradual")["unfreeze"] == "gradual"
    assert schedule("strategy=partial_bn")["train_bn"] and not schedule("strategy=partial")["train_bn"]
    assert schedule("strategy=lora", "experiment=smoke")["freeze_epochs"] == 0  # the strategy's own
    assert schedule("strategy=lora", "strategy.frozen_epochs=2")["freeze_epochs"] == 2  # the user's wins
    assert schedule("experiment=resnet18_cifar10")["freeze_epochs"] == 5  # the experiment's, for its full
    assert schedule("experiment=resnet18_cifar10", "strategy=gradual")["freeze_epochs"] == 1  # gradual's own
    assert schedule("experiment=cpu_quick", "strategy=full")["freeze_epochs"] == 1  # full's own


@pytest.mark.command  # composes every experiment x strategy (about 90 configs): the command tier
def test_an_experiment_may_choose_a_strategy_and_its_options_and_the_command_line_still_wins():
    """An experiment chooses a strategy and may give options for it (conf/experiment_strategy/); strategy=X
    on the command line builds X with X's own options, unless X is the experiment's own choice."""
    def part(cfg, key):
        return OmegaConf.to_container(OmegaConf.select(cfg, key), resolve=False)

    assert make_cfg(["experiment=cpu_quick"], Path("/tmp/unused")).strategy.name == "partial_bn"
    alone = {p.stem: make_cfg([f"strategy={p.stem}"], Path("/tmp/unused"))
             for p in (Path(CONF_DIR) / "strategy").glob("*.yaml")}
    for experiment in sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml")):
        own = make_cfg([f"experiment={experiment}"], Path("/tmp/unused"))
        for name, ref in alone.items():
            cfg = make_cfg([f"experiment={experiment}", f"strategy={name}"], Path("/tmp/unused"))
            want = own if name == own.strategy.name else ref
            assert part(cfg, "strategy") == part(want, "strategy"), (experiment, name)
            assert part(cfg, "callbacks.freeze") == part(want, "callbacks.freeze"), (experiment, name)
            assert _built(cfg).name == name


def test_cpu_transfer_freezes_five_groups_and_the_command_line_or_another_strategy_changes_it():
    def strategy(*overrides):
        cfg = make_cfg(["data.root=/x", *overrides], Path("/tmp/unused"))
        return _built(cfg), cfg

    chosen, cfg = strategy("experiment=cpu_transfer")
    assert (chosen.name, chosen.frozen_groups, chosen.bn_statistics) == ("partial", 5, "trained")
    assert chosen.frozen_precision == "auto"  # bf16 only where the CPU has bf16 units
    # the frozen groups keep their ImageNet statistics; the groups that train update theirs
    assert not strategy_and_schedule(cfg.strategy)[1]["train_bn"] and cfg.data.passes_per_epoch == 1.5
    assert cfg.callbacks.probe_head.images == 2048
    assert strategy("experiment=cpu_transfer", "strategy=partial_bn")[0].frozen_groups == 6  # partial_bn's own
    assert strategy("experiment=cpu_transfer", "strategy.frozen_groups=4")[0].frozen_groups == 4  # the user's
    assert strategy("experiment=cpu_transfer", "strategy.frozen_precision=fp32")[0].frozen_precision == "fp32"
    assert strategy("experiment=cpu_quick")[0].frozen_groups == 6  # partial's own
    assert strategy("strategy=partial")[0].frozen_groups == 6
    assert strategy("strategy=partial")[0].frozen_precision == "fp32"  # as stored, unless asked


def vit(strategy, **kwargs) -> ImageClassifier:
    return build_classifier(backbone="vit_tiny_patch16_224", num_classes=10, pretrained=False, input_size=32,
                           strategy=strategy, **kwargs)


def test_adapters_get_the_layer_decay_of_their_block_and_their_own_lr():
    torch.manual_seed(0)
    model = vit(LoRA(lr_mult=1.0), layer_decay=0.5, backbone_lr_mult=0.1)
    names = model.trainable_backbone()
    groups = model.backbone_param_groups(names, "backbone")
    depth = 13  # vit_tiny: patch/pos group + 12 blocks (the final norm joins the last); the head is depth 0
    scale_of = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    by_name = dict(model.backbone.named_parameters())
    for block in (0, 11):
        p = by_name[f"blocks.{block}.attn.qkv.lora_A.default.weight"]
        assert scale_of[id(p)] == pytest.approx(1.0 * 0.5 ** (depth - (block + 1)))  # lr_mult, not 0.1
    assert all(".lora_" in n for n in names) and len(names) == 12 * 4 * 2


def test_lora_targets_per_backbone_family_and_bad_regex_is_one_line():
    model = vit(LoRA())
    assert set(model.strategy.modules) == {f"blocks.{i}.{m}" for i in range(12)
                                           for m in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")}
    conv = build_classifier(backbone="test_resnet", num_classes=10, pretrained=False, input_size=32, strategy=LoRA())
    assert conv.strategy.modules and all("downsample" in m or "conv" in m for m in conv.strategy.modules)
    from cifar_ft.errors import ConfigError

    with pytest.raises(ConfigError, match="target_regex"):
        LoRA(target_regex="blocks[")
    with pytest.raises(ConfigError, match="selects no"):
        vit(LoRA(target_regex="nothing_here"))


def test_vpt_prompts_are_skipped_by_pooling_and_start_from_the_same_features():
    torch.manual_seed(0)
    from cifar_ft.strategies.vpt import VPT

    model = vit(VPT(tokens=4, deep=True)).eval()
    assert model.backbone.num_prefix_tokens == 1 + 4
    x = torch.randn(2, 3, 32, 32)
    tokens = model.backbone.forward_features(x)
    assert tokens.shape[1] == 1 + 4 + 4  # class token, prompts, 2x2 patches
    model.backbone.blocks.prompt.data.zero_()
    shallow = vit(VPT(tokens=4, deep=False))
    assert shallow.backbone.blocks.prompt.shape == (1, 4, 192)


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
@pytest.mark.parametrize("strategy", [["strategy=full"], ["strategy=partial", "strategy.frozen_groups=2"]])
def test_frozen_bn_statistics_keep_every_statistic_while_the_rest_trains(cfg_factory, resnet_weights, strategy):
    """strategy.bn_statistics=frozen: every BatchNorm statistic bit-identical after training (the
    pretrained normalisation), while the BatchNorm scales and shifts and the weights still train."""
    got = changed(cfg_factory, *strategy, "strategy.bn_statistics=frozen",
                  "strategy.frozen_epochs=0", f"model.pretrained={resnet_weights}")
    keys = set(Weights.start)
    assert not got & bn_buffers(keys)
    assert bn_keys(keys, stats=False) & got and got >= HEAD


def test_bn_statistics_is_checked_and_rebuilt_from_the_checkpoint_spec():
    from cifar_ft.errors import ConfigError
    from cifar_ft.strategies.selective import Full, Partial

    with pytest.raises(ConfigError, match="strategy.bn_statistics='fixed' is not one of: trained, frozen"):
        Full(bn_statistics="fixed")
    for strategy in (Full(bn_statistics="frozen"), Partial(frozen_groups=2, bn_statistics="frozen")):
        rebuilt = build_strategy(strategy.spec())
        assert rebuilt.bn_statistics == "frozen" and rebuilt.spec() == strategy.spec()
    assert Full().spec() == {"name": "full"}  # the default leaves older checkpoints' specs as they were


@pytest.mark.parametrize("backbone", ["test_vit", "test_resnet"])
def test_a_lora_rank_wider_than_its_layers_is_refused_before_any_adapter_exists(backbone):
    """`strategy.rank=200000` on a model no wider than 64 took 4.2 GB and wrote a 2.27 GB "small"
    checkpoint; it is refused, naming the narrowest adapted layer, and nothing is injected. The widest
    rank that fits is accepted."""
    import timm
    from torch import nn

    from cifar_ft.errors import ConfigError
    from cifar_ft.strategies.lora import LoRA

    net = timm.create_model(backbone, pretrained=False, num_classes=0)
    targets = LoRA().target_modules(net)
    widths = []
    for name in targets:
        layer = net.get_submodule(name)
        widths.append(min(layer.in_features, layer.out_features) if isinstance(layer, nn.Linear) else
                      min(layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1],
                          layer.out_channels))
    before = sum(p.numel() for p in net.parameters())
    with pytest.raises(ConfigError, match=rf"strategy.rank=200000 is larger than the adapted layer .* valid: 1 to "
                                          rf"{min(widths)} "):
        LoRA(rank=200000).prepare(net)
    assert sum(p.numel() for p in net.parameters()) == before  # nothing allocated
    with pytest.raises(ConfigError, match="strategy.rank"):
        LoRA(rank=min(widths) + 1).prepare(timm.create_model(backbone, pretrained=False, num_classes=0))
    LoRA(rank=min(widths)).prepare(timm.create_model(backbone, pretrained=False, num_classes=0))
