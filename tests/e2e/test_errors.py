"""Bad input and failing runs: one line naming the bad value, a non-zero exit, nothing lost."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from cifar_ft.errors import ConfigError
from cifar_ft.train import train
from tests.conftest import ROOT


def cli_error(*args: str) -> str:
    """Run the training command; assert exit code 2 and exactly one stderr line; return it."""
    proc = subprocess.run([sys.executable, "-m", "cifar_ft.train", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


def test_unknown_config_group_option_is_one_line_with_valid_options(tmp_path):
    line = cli_error("model=vit_bse", f"hydra.run.dir={tmp_path}")
    assert "model=vit_bse" in line and "valid:" in line and "resnet18" in line and "Did you mean: vit_base" in line
    valid = line.split("valid: ")[1].split(".")[0].split(", ")
    assert "base" not in valid and "_base" not in valid  # the shared base config is not a user's choice
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # nothing was started


@pytest.mark.slow  # subprocess start-up (~10 s per command here) dominates: the slow tier
def test_unknown_key_and_bad_override_syntax_are_one_line(tmp_path):
    line = cli_error("trainer.max_epoch=3", f"hydra.run.dir={tmp_path}")
    assert "trainer.max_epoch: 'max_epoch' is not a key of the trainer section. Did you mean: max_epochs" in line
    assert "data.batch_size=[1" in cli_error("data.batch_size=[1", f"hydra.run.dir={tmp_path}")


@pytest.mark.slow  # subprocess start-up (~10 s per command here) dominates: the slow tier
def test_unwritable_output_directory_is_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    line = cli_error("experiment=smoke", f"hydra.run.dir={blocker}/run")
    assert f"{blocker}/run" in line and "hydra.run.dir" in line
    assert blocker.read_text() == "not a directory"  # nothing lost


def test_unwritable_paths_output_dir_fails_before_training(cfg_factory, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    cfg = cfg_factory()
    cfg.paths.output_dir = str(blocker / "run")
    with pytest.raises(ConfigError, match="paths.output_dir=.*a_file/run.* is not writable"):
        train(cfg)


# Bad values, paths and files: (command, its arguments, what the one error line must name).
BAD_INPUTS = [
    ("train", ["optimizer.lr=-1"], "optimizer.lr=-1"),
    ("train", ["strategy=lora", "strategy.rank=0"], "strategy.rank=0"),
    ("train", ["optimizer.lr=inf"], "optimizer.lr=inf"),
    ("train", ["seed=4294967296"], "seed=4294967296"),
    ("train", ["trainer.max_epochs=true"], "trainer.max_epochs=True"),
    ("train", ["trainer.num_sanity_val_steps=-3"], "trainer.num_sanity_val_steps=-3"),
    ("train", ["data=image_folder", "data.root=.", "data.image_size=0"], "data.image_size=0"),
    ("train", ["callbacks.freeze.groups=['blocks[']"], "callbacks.freeze.groups"),
    ("train", ["strategy=lora", "strategy.targets=attention"], "strategy.targets='attention'"),
    ("train", ["strategy=vpt", "strategy.tokens=0"], "strategy.tokens=0"),
    ("train", ["strategy=partial", "strategy.frozen_groups=0"],
     "strategy.frozen_groups=0 is not valid; valid: an integer >= 1"),
    ("train", ["strategy=partial", "strategy.frozen_groups=99"], "strategy.frozen_groups=99 leaves nothing to train"),
    ("train", ["strategy=lorra"], "strategy"),
    ("train", ["optimizer.weight_decay=-0.1"], "optimizer.weight_decay=-0.1"),
    ("train", ["model.input_size=0"], "model.input_size=0"),
    ("train", ["model.input_size=8"], "model.input_size=8"),
    ("train", ["model.test_input_size=4"], "model.test_input_size=4"),
    ("train", ["callbacks=[default,progressive_resize]", "callbacks.progressive_resize.start_size=8"],
     "callbacks.progressive_resize.start_size=8"),
    ("train", ["callbacks=[default,precise_bn]", "callbacks.precise_bn.images=0"], "callbacks.precise_bn.images=0"),
    ("train", ["callbacks=[default,progressive_resize]", "callbacks.progressive_resize.start_size=32",
               "callbacks.progressive_resize.start_fraction=0.9", "callbacks.progressive_resize.end_fraction=0.5"],
     "start_fraction=0.9 < end_fraction=0.5"),
    ("train", ["callbacks.ema.decay=0.999"], "callbacks.ema.decay: callbacks.ema is opt-in; choose it with "
                                             "callbacks=[default,ema]"),
    ("train", ["model.backbone=vit_tiny_patch16_224", "model.input_size=32", "model.test_input_size=48"],
     "model.test_input_size=48: vit_tiny_patch16_224 takes only 32 px inputs"),
    ("train", ["data.batch_size=0"], "data.batch_size=0"),
    ("train", ["data.eval_batch_size=0"], "data.eval_batch_size=0"),
    ("train", ["model.label_smoothing=1.5"], "model.label_smoothing=1.5"),
    ("train", ["model.head_dropout=1.0"], "model.head_dropout=1.0"),
    ("train", ["data.val_size=-5"], "data.val_size=-5"),
    ("train", ["data.mixup_alpha=-1"], "data.mixup_alpha=-1"),
    ("train", ["data.rrc_scale=[0.9,0.5]"], "data.rrc_scale=[0.9, 0.5]"),
    ("train", ["data.eval_crop_pct=0"], "data.eval_crop_pct=0"),
    ("train", ["data.pad_fraction=0.9"], "data.pad_fraction=0.9"),
    ("train", ["data.passes_per_epoch=0"], "data.passes_per_epoch=0"),
    ("train", ["model.backprop_fraction=1.5"], "model.backprop_fraction=1.5"),
    ("train", ["model.std=[0.5,0,0.5]"], "model.std=[0.5, 0.0, 0.5]"),
    ("train", ["trainer.max_epochs=0"], "trainer.max_epochs=0"),
    ("train", ["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches=0"),
    ("train", ["trainer.precision=8-mixed"], "trainer.precision='8-mixed'"),
    ("train", ["scheduler.warmup_steps=-10"], "scheduler.warmup_steps=-10"),
    ("train", ["seed=-1"], "seed=-1"),
    ("train", ["strategy.frozen_epochs=-1"], "strategy.frozen_epochs=-1"),
    ("train", ["strategy.frozen_epochs=5", "trainer.max_epochs=2"], "strategy.frozen_epochs=5"),
    ("train", ["callbacks.freeze.unfreeze=sometimes"], "callbacks.freeze.unfreeze='sometimes'"),
    ("train", ["data.augment=jiter"], "data.augment='jiter'"),
    ("train", ["model.source=keras"], "model.source='keras'"),
    ("train", ["model.head_init=ones"], "model.head_init='ones'"),
    ("train", ["model.backbone=resnet181"], "model.backbone='resnet181'"),
    ("train", ["model.pretrained=/nonexistent/w.pth"], "model.pretrained='/nonexistent/w.pth'"),
    ("train", ["model.pretrained=pypi:no-such-package"], "model.pretrained='pypi:no-such-package'"),
    ("train", ["ckpt_path=/nonexistent/last.ckpt"], "ckpt_path='/nonexistent/last.ckpt'"),
    ("train", ["data=image_folder", "data.root=/nonexistent/photos"], "data.root='/nonexistent/photos'"),
    ("eval", ["ckpt_path=/nonexistent/best.ckpt", "data=synthetic"], "ckpt_path='/nonexistent/best.ckpt'"),
    ("predict", ["ckpt_path={ckpt}", "inputs=[/nonexistent/cat.jpg]"], "inputs: '/nonexistent/cat.jpg'"),
    ("predict", ["ckpt_path={ckpt}", "inputs=[{ckpt}]", "top_k=0"], "top_k=0"),
    ("predict", ["ckpt_path={ckpt}", "inputs=[{ckpt}]", "on_bad_image=ignore"], "on_bad_image='ignore'"),
    ("export", ["ckpt_path={ckpt}", "format=tflite"], "format='tflite'"),
    ("export", ["ckpt_path={ckpt}", "out={run}/metrics.json/onnx"], "which is a file"),
    ("export", ["ckpt_path={ckpt}", "out=/proc/cifar_ft_export"], "out='/proc/cifar_ft_export' is not writable"),
    ("predict", ["ckpt_path={ckpt}", "inputs=[]"], "inputs=[]"),
    ("predict", ["ckpt_path={ckpt}", "inputs=[{ckpt}]", "device=gpu7"], "device='gpu7'"),
    ("predict", ["ckpt_path={ckpt}", "inputs=[{ckpt}]", "device=cuda:3"], "device='cuda:3'"),
    ("train", ["scheduler=plateau"],
     "scheduler.warmup_steps: experiment/smoke sets it, and the option chosen for scheduler (PlateauOptions)"),
    ("eval", ["ckpt_path={run}/junk/random.ckpt"], "is not a readable torch file (unpickling failed"),
    ("train", ["model.pretrained={run}/junk/bad.safetensors"], "cannot be read as safetensors"),
    ("train", ["trainer.strategy=dpp"], "trainer.strategy='dpp'"),
    ("train", ["trainer.accelerator=tpu2"], "trainer.accelerator='tpu2'"),
    ("train", ["+foo=1"], "+foo=1: 'foo' is not a key of the train config"),
    ("train", ["optimized_metric=val/accuracy"], "optimized_metric='val/accuracy'"),
    ("train", ["ckpt_path=last", "hydra.run.dir="], "hydra.run.dir= is empty"),
    ("train", ["data=image_folder", "data.root={run}/metrics.json"], "is a file, not a folder or a .zip"),
    ("train", ["ckpt_path={ckpt}"], "is the checkpoint of a finished run"),
    ("train", ["ckpt_path={run}/junk/truncated.ckpt"], "a truncated or corrupt file?"),
    ("train", ["ckpt_path={run}/junk/raw_pickle.ckpt"], "is not a readable torch file (unpickling failed"),
    ("train", ["ckpt_path={run}/junk/legacy.ckpt"], "is not a cifar_ft training checkpoint"),
    ("train", ["ckpt_path={ckpt}", "trainer.max_epochs=3", "model.backbone=test_vit", "model.input_size=160"],
     "was trained with backbone='test_resnet' but this run builds backbone='test_vit'"),
    ("train", ["ckpt_path={ckpt}", "trainer.max_epochs=3", "strategy=lora"], "does not fit the model this run builds"),
    ("eval", ["ckpt_path={ckpt}", "hydra.run.dir={run}"], "holds a run's results"),
    ("train", ["hydra.run.dir={run}"], "holds a run already"),
    ("train", ["calibrate=temprature"], "calibrate='temprature'"),
    ("eval", ["ckpt_path={ckpt}", "calibrate=temperature"], "holds no fitted temperature"),
    ("eval", ["ckpt_path={ckpt}", "robustness=corruptions", "robustness.corruptions=[fogg]"],
     "robustness.corruptions='fogg'"),
    ("train", ["robustness=corruptions", "robustness.severities=[6]"], "robustness.severities: 6"),
    ("predict", ["ckpt_path={ckpt}", "inputs=[{run}]", "explain=maybe"], "explain='maybe'"),
    ("export", ["ckpt_path={ckpt}", "format=peft"], "format=peft needs a checkpoint of strategy=lora or dora"),
    ("export", ["ckpt_path={run}/junk/nan.ckpt"], "holds non-finite weights (NaN/inf) in 1 tensor(s)"),
    ("eval", ["ckpt_path={run}/junk/nan.ckpt"], "holds non-finite weights (NaN/inf) in 1 tensor(s)"),
    ("predict", ["ckpt_path={run}/junk/nan.ckpt", "inputs=[{run}]"], "holds non-finite weights"),
    ("train", ["trainer.devices=0"], "trainer.devices=0 is not valid; valid: auto, -1"),
    ("train", ["trainer.devices=-3"], "trainer.devices=-3 is not valid"),
    ("train", ["data.passes_per_epoch=1e9"], "data.passes_per_epoch=1000000000.0 is not valid"),
    ("train", ["strategy=lp_ft", "trainer.max_epochs=1"], "strategy=lp_ft with trainer.max_epochs=1"),
    ("train", ["robustness=corruptions", "robustness.corruptions=[fog,fog]"], "'fog' is listed twice"),
    ("train", ["calibrate=temperature", "data.val_size=0"], "calibrate=temperature with data.val_size=0"),
    ("train", ["--experimental-rerun", "{run}/config.pickle"], "Hydra would unpickle that file"),
    ("train", ["+optimizer.lrr=1e-3"], "optimizer.lrr: unknown optimizer option for AdamW. Did you mean: lr?"),
    ("train", ["data.batch_sise=64"], "data.batch_sise: 'batch_sise' is not a key of the data section. Did you mean: "
                                      "batch_size"),
]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command,args,named", BAD_INPUTS, ids=[" ".join(a) for _, a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_first_and_writes_nothing(command, args, named, smoke_run, capfd, monkeypatch,
                                                        tmp_path):
    """As the command line runs it (`main()` of the module): exit 2, one `error:` line naming the key and
    value, at most 5 lines in all, no traceback or config tree, the existing run untouched and, for the
    commands that write a run (train, eval; runs/run_dir.py), no new run directory left behind."""
    import importlib

    before = snapshot(smoke_run)
    ckpt = smoke_run / "checkpoints" / "last.ckpt"
    run_dir = tmp_path / "new_run" if command in ("train", "eval") else smoke_run
    argv = [f"hydra.run.dir={run_dir}"] + [a.format(ckpt=ckpt, run=smoke_run) for a in args]
    monkeypatch.setattr(sys, "argv", [command, *(["experiment=smoke"] if command == "train" else []), *argv])
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        with pytest.raises(SystemExit) as info:
            importlib.import_module(f"cifar_ft.{command}").main()
    finally:  # Hydra's job logging (console and file handlers) must not outlive this in-process command
        root.handlers[:], root.level = handlers, level
    out, err = capfd.readouterr()
    lines = (out + err).strip().splitlines()
    assert info.value.code == 2 and len(lines) <= 5, out + err
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and named in errors[0], out + err
    assert "Traceback" not in out + err and "optimizer:" not in out  # no traceback, no config tree
    assert snapshot(smoke_run) == before
    assert command not in ("train", "eval") or not run_dir.exists()
