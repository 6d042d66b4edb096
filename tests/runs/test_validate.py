"""Config checks before anything runs: required keys, values that do not resolve, bad choices; each a
one-line error (exit 2) written before any run directory."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cifar_ft.errors import ConfigError
from cifar_ft.runs.compose import compose_config, unknown_key_message
from cifar_ft.runs.config import MOVED
from cifar_ft.runs.validate import validate_config
from tests.conftest import ROOT


@pytest.mark.slow  # subprocess start-up (~10 s per command here) dominates: the slow tier
@pytest.mark.parametrize("command", ["eval", "predict", "export"])
def test_a_command_without_its_checkpoint_says_so_in_one_line(command, tmp_path):
    proc = subprocess.run([sys.executable, "-m", f"cifar_ft.{command}", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: ckpt_path is required; give ckpt_path=PATH")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("overrides", [["tta=bogus"], ["tta=flipp"]])
def test_any_invalid_tta_is_one_line(overrides):
    with pytest.raises(ConfigError, match=r"tta='flipp?'? ?.*is not valid; valid: none, flip|tta='bogus' is not"):
        validate_config(compose_config(["experiment=smoke", *overrides]))


def test_a_negative_frozen_epochs_is_named_itself():
    with pytest.raises(ConfigError, match=r"^strategy.frozen_epochs=-1 is not valid; valid: an integer >= 0"):
        validate_config(compose_config(["experiment=smoke", "strategy.frozen_epochs=-1"]))


def test_a_zero_frozen_groups_is_named_itself():
    with pytest.raises(ConfigError, match=r"^strategy.frozen_groups=0 is not valid; valid: an integer >= 1"):
        validate_config(compose_config(["experiment=cpu_transfer", "data.root=/x", "strategy.frozen_groups=0"]))


@pytest.mark.parametrize("key", sorted(MOVED))
def test_a_moved_key_is_one_line_naming_its_replacement(key):
    overrides = ["experiment=smoke", f"{key}=1"]
    with pytest.raises(Exception) as info:
        compose_config(overrides)
    message = unknown_key_message(info.value, "train", overrides)
    assert message == f"{key} is now {MOVED[key]} (CHANGELOG.md); give {MOVED[key].split(' ')[0]}=... instead"


def test_bn_statistics_is_one_choice():
    with pytest.raises(ConfigError, match=r"strategy.bn_statistics='fixed'.*trained, frozen, adapt"):
        validate_config(compose_config(["experiment=smoke", "strategy=partial", "strategy.bn_statistics=fixed"]))
    validate_config(compose_config(["experiment=smoke", "strategy=partial", "strategy.bn_statistics=frozen"]))


@pytest.mark.parametrize("override", ["strategy.frozen_precision=fp16"])
def test_a_bad_frozen_precision_is_one_line_before_the_run_starts(override):
    with pytest.raises(ConfigError, match=rf"^{override.split('=')[0]}='fp16'.*fp32, bf16, auto"):
        validate_config(compose_config(["experiment=smoke", "strategy=partial", override]))


@pytest.mark.parametrize("override,match", [("callbacks.probe_head.images=1", "callbacks.probe_head.images=1 "),
                                            ("callbacks.probe_head.l2=-0.1", "callbacks.probe_head.l2=-0.1 "),
                                            ("callbacks.probe_head.max_iter=0", "callbacks.probe_head.max_iter=0 ")])
def test_a_bad_probe_head_setting_is_one_line_before_the_run_starts(override, match):
    with pytest.raises(ConfigError, match=match):
        validate_config(compose_config(["experiment=smoke", "callbacks=[default,probe_head]", override]))


def test_a_value_that_does_not_resolve_is_named_not_skipped():
    cfg = compose_config(["experiment=smoke", "data.batch_size=${oc.env:CIFAR_FT_TEST_SURELY_UNSET}"])
    with pytest.raises(ConfigError, match="data.batch_size: its value cannot be resolved .*CIFAR_FT_TEST_SURELY"):
        validate_config(cfg)


def test_hydra_values_are_left_to_the_run():
    validate_config(compose_config(["experiment=smoke"]))  # ${hydra:...} keys resolve only inside a run


def test_several_devices_without_a_gpu_are_refused_unless_cpu_is_explicit():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: trainer.devices=2 means two of them")
    with pytest.raises(ConfigError, match="trainer.devices=2 with trainer.accelerator=auto: no GPU was found"):
        validate_config(compose_config(["experiment=smoke", "trainer=default", "trainer.devices=2"]))
    validate_config(compose_config(["experiment=smoke", "trainer=ddp_cpu"]))  # explicit CPU processes: fine


def test_every_shipped_config_uses_only_known_keys_and_an_unknown_one_is_one_line(tmp_path):
    from cifar_ft.errors import ConfigError
    from cifar_ft.runs.validate import validate_config
    from tests.conftest import CONF_DIR, make_cfg

    for group in ("model", "data", "strategy"):
        for path in sorted((Path(CONF_DIR) / group).glob("*.yaml")):
            if path.stem in ("base", "_base"):
                continue
            extra = ["data.root=/nonexistent"] if group == "data" and path.stem == "image_folder" else []
            cfg = make_cfg([f"{group}={path.stem}", *extra], tmp_path / f"{group}-{path.stem}")
            try:
                validate_config(cfg)
            except ConfigError as err:  # other checks (weights files, roots) may object; never to a key
                assert "unknown" not in str(err), (group, path.stem, err)
    for overrides, want in ((["experiment=smoke", "data.max_images=5"], "data.max_images: 'max_images' is not a key"),
                            (["strategy=lora", "strategy.ranks=4"], "strategy.ranks: 'ranks' is not a key of the "
                                                                    "strategy section. Did you mean: rank")):
        with pytest.raises(Exception) as info:
            make_cfg(overrides, tmp_path / "bad")
        assert unknown_key_message(info.value, "train", overrides).startswith(want)


def test_removed_keys_say_what_does_their_job():
    overrides = ["experiment=smoke", "print_config=full"]
    with pytest.raises(Exception) as info:
        compose_config(overrides)
    assert unknown_key_message(info.value, "train", overrides).startswith("print_config was removed (CHANGELOG.md)")


def test_the_console_gets_a_summary_and_the_run_directory_the_whole_resolved_config(capsys, tmp_path):
    from omegaconf import OmegaConf

    from cifar_ft.runs.build import print_config
    from tests.conftest import make_cfg

    cfg = make_cfg(["experiment=smoke", "optimizer.lr=0.0123", "strategy=lora"], tmp_path / "run")
    print_config(cfg)
    out = capsys.readouterr().out.splitlines()
    assert len(out) <= 10 and "optimizer: AdamW lr=0.0123 weight_decay=0.05" in out[4], out
    assert "strategy: LoRA name=lora rank=8" in out[2] and "backbone=test_resnet" in out[1]
    saved = tmp_path / "run" / ".hydra" / "resolved.yaml"
    assert OmegaConf.load(saved) == OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_a_run_shorter_than_its_warmup_or_logging_interval_is_told_and_still_gets_curves(cfg_factory, caplog):
    import logging

    from cifar_ft.runs.validate import short_run_warnings
    from cifar_ft.train import train

    cfg = cfg_factory("trainer.max_epochs=1", "strategy.frozen_epochs=0", "data.train_size=176",
                      "scheduler.warmup_steps=30", "trainer.log_every_n_steps=50")
    warnings = short_run_warnings(cfg, 96)  # 96 images / 32 per batch = 3 steps
    assert len(warnings) == 2 and "warmup_steps=30 is longer than the whole run (3 optimizer steps)" in warnings[0]
    assert "log_every_n_steps=50 > the run's 3 optimizer steps" in warnings[1]
    with caplog.at_level(logging.WARNING, logger="cifar_ft"):
        train(cfg)
    assert sum("longer than the whole run" in r.message for r in caplog.records) == 1
    assert (Path(cfg.paths.output_dir) / "curves.png").is_file()  # epoch metrics, and a note for the rest
    assert short_run_warnings(cfg_factory("trainer.max_epochs=5"), 480) == []


def test_every_rule_names_a_key_some_config_has():
    """A misspelt RULES or CHOICES key would be skipped silently (keys absent from a command's config are);
    each must be a key of some composition of the real conf/."""
    from omegaconf import OmegaConf

    from cifar_ft.runs.compose import compose_config
    from cifar_ft.runs.validate import CHOICES, RULES

    compositions = [("train", []), ("eval", []), ("predict", []), ("export", [])] + [
        ("train", [o]) for o in ("strategy=lora", "strategy=vpt", "strategy=partial", "strategy=bitfit",
                                 "data=image_folder", "robustness=corruptions", "scheduler=plateau", "optimizer=sgd",
                                 "experiment=smoke")]
    keys: set[str] = set()
    for name, overrides in compositions:
        cfg = OmegaConf.to_container(compose_config(overrides, config_name=name), resolve=False)

        def walk(node, prefix=""):
            for k, v in node.items():
                keys.add(prefix + str(k))
                if isinstance(v, dict):
                    walk(v, prefix + str(k) + ".")
        walk(cfg)
    missing = sorted(k for k in [*RULES, *CHOICES] if k not in keys)
    assert not missing, missing
