"""strategy.frozen_precision: the frozen groups' forward in bf16 during training steps, float32 after them
and everywhere else (cifar_ft.strategies.precision)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cifar_ft.errors import ConfigError
from cifar_ft.strategies import build_strategy
from cifar_ft.strategies import precision as precision_module
from cifar_ft.strategies.precision import Bf16Forward, outermost
from cifar_ft.strategies.selective import Partial


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)), nn.Conv2d(8, 8, 3),
                         nn.Flatten(), nn.LazyLinear(4))


def dtypes_seen(model: nn.Sequential, x: torch.Tensor) -> tuple[torch.dtype, torch.dtype]:
    """(dtype of the frozen convolution's output, dtype of what the first trained layer receives)."""
    seen: dict[str, torch.dtype] = {}
    hooks = [model[0][0].register_forward_hook(lambda m, a, out: seen.__setitem__("inside", out.dtype)),
             model[1].register_forward_pre_hook(lambda m, a: seen.__setitem__("after", a[0].dtype))]
    model(x).sum().backward() if torch.is_grad_enabled() else model(x)
    for h in hooks:
        h.remove()
    return seen["inside"], seen["after"]


def hooked(mode: str) -> nn.Sequential:
    model = net()
    model(torch.zeros(2, 3, 8, 8))  # materialise the lazy head
    model[0].requires_grad_(False)
    Bf16Forward(model, mode).attach([model[0]])
    return model


def test_outermost_takes_the_largest_modules_that_are_wholly_frozen():
    model = net()
    model(torch.zeros(1, 3, 8, 8))
    assert outermost(model, {"0.0.weight", "0.0.bias", "0.1.weight", "0.1.bias"}) == [model[0]]
    # a module with one trainable parameter is not taken whole: its frozen children are
    assert outermost(model, {"0.0.weight", "0.0.bias", "0.1.weight"}) == [model[0][0]]
    assert outermost(model, {"1.weight", "1.bias", "0.1.weight", "0.1.bias"}) == [model[0][1], model[1]]


def test_frozen_groups_compute_in_bf16_in_training_steps_and_hand_on_float32():
    x = torch.randn(2, 3, 8, 8)
    model = hooked("bf16").train()
    assert dtypes_seen(model, x) == (torch.bfloat16, torch.float32)
    with torch.no_grad():  # callbacks' feature passes
        assert dtypes_seen(model, x) == (torch.float32, torch.float32)
    model.eval()  # validation, test, eval, export
    assert dtypes_seen(model, x) == (torch.float32, torch.float32)
    assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("units,want", [([], torch.float32), (["avx512_bf16"], torch.bfloat16)])
def test_auto_uses_bf16_only_where_the_cpu_has_bf16_units(monkeypatch, units, want):
    monkeypatch.setattr(precision_module, "cpu_bf16_units", lambda: units)
    assert dtypes_seen(hooked("auto").train(), torch.randn(2, 3, 8, 8))[0] == want


def test_the_autocast_region_closes_when_the_frozen_forward_raises():
    model = hooked("bf16").train()
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 5, 8, 8))  # 5 channels into a 3-channel convolution
    assert not torch.is_autocast_enabled("cpu")


def test_partial_hands_on_the_frozen_groups_output_within_bf16_rounding_of_fp32():
    """Partial on a timm model: what the first trained group receives differs from fp32 (bf16 is in
    effect) by bf16's rounding over a few layers (unit roundoff 2**-8), not more; its gradients reach
    every trained parameter."""
    import timm

    from cifar_ft.backbones import layer_groups

    handed, grads = {}, {}
    for mode in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = timm.create_model("test_resnet", num_classes=3)
        strategy = Partial(frozen_groups=2, frozen_precision=mode)
        strategy.prepare(model)
        trained = set(strategy.trainable(model))
        for name, p in model.named_parameters():
            p.requires_grad_(name in trained)
        first = layer_groups(model)[2][0].rsplit(".", 1)[0]  # a module of the first trained group
        model.get_submodule(first).register_forward_pre_hook(lambda m, a, mode=mode: handed.__setitem__(mode, a[0]))
        torch.manual_seed(1)
        model.train()(torch.randn(4, 3, 32, 32)).square().sum().backward()
        grads[mode] = [p.grad for n, p in model.named_parameters() if n in trained]
    assert handed["bf16"].dtype == torch.float32
    error = ((handed["bf16"] - handed["fp32"]).norm() / handed["fp32"].norm()).item()
    assert 1e-4 < error < 0.03, error
    assert all(g is not None and torch.isfinite(g).all() for g in grads["bf16"])


def test_frozen_precision_is_checked_and_rebuilt_from_the_checkpoint_spec():
    with pytest.raises(ConfigError, match=r"strategy.frozen_precision='fp16' is not one of fp32, bf16, auto"):
        Partial(frozen_precision="fp16")
    strategy = Partial(frozen_groups=2, frozen_precision="auto")
    rebuilt = build_strategy(strategy.spec())
    assert rebuilt.frozen_precision == "auto" and rebuilt.spec() == strategy.spec()
    assert Partial(frozen_groups=2).spec() == {"name": "partial", "frozen_groups": 2}  # older specs unchanged


def test_bf16_frozen_groups_trace_under_torch_compile():
    """model.compile=true: dynamo traces the wrapped forward (autocast entered in a hook and left in
    another could not be traced); the compiled step computes what the eager one does."""
    model = hooked("bf16").train()
    x = torch.randn(2, 3, 8, 8)
    eager = model(x)
    compiled = torch.compile(model, backend="eager")(x)
    compiled.sum().backward()
    assert compiled.dtype == torch.float32 and torch.allclose(compiled, eager)
    assert model[1].weight.grad is not None and not torch.is_autocast_enabled("cpu")


def test_a_copy_of_the_model_follows_its_own_mode():
    """EMA and export copy the model: the copy's wrapped forward reads the copy's training mode."""
    import copy

    model = hooked("bf16").train()
    twin = copy.deepcopy(model).eval()
    x = torch.randn(2, 3, 8, 8)
    assert dtypes_seen(twin, x)[0] == torch.float32 and dtypes_seen(model, x)[0] == torch.bfloat16
