"""The one training engine (medconv.training.engine): schedules, precision, NaN stop, selection, resume.

A toy task (a linear model on fixed data) tests the engine alone in a fraction of a second; the
trainers built on it (classification, segmentation, detection) are resumed bit-identically below.
"""
import math

import numpy as np
import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file
from torch import nn

from medconv.config import BaseConfig, TrainConfig
from medconv.errors import TrainingDiverged, UserError
from medconv.training import engine, precision
from medconv.training.engine import fit, make_optimizer, make_scheduler, open_run


def closed_form(cfg: BaseConfig, epoch: int) -> float:
    """The schedule as the paper formulas give it (what medconv computed by hand before the engine)."""
    if epoch < cfg.warmup_epochs:
        return cfg.lr * (epoch + 1) / (cfg.warmup_epochs + 1)
    if cfg.schedule == "cosine":
        t = (epoch - cfg.warmup_epochs) / max(1, cfg.epochs - cfg.warmup_epochs)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))
    if cfg.schedule == "step":
        return cfg.lr * cfg.gamma ** sum(epoch >= round(m * cfg.epochs) for m in cfg.milestones)
    return cfg.lr


@pytest.mark.parametrize("settings", [dict(schedule="cosine"), dict(schedule="cosine", warmup_epochs=3),
                                      dict(schedule="step", milestones=[0.5, 0.75]),
                                      dict(schedule="step", milestones=[0.3, 0.6], warmup_epochs=2),
                                      dict(schedule="constant", warmup_epochs=1)])
def test_torch_schedulers_follow_the_closed_form_with_layer_scales(settings):
    cfg = BaseConfig(epochs=20, lr=0.1, **settings).validate()
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    groups = [{"params": list(model[0].parameters()), "lr_scale": 0.5}, {"params": list(model[1].parameters())}]
    optimizer = make_optimizer(cfg, model, groups)
    scheduler = make_scheduler(cfg, optimizer)
    for epoch in range(cfg.epochs):
        expected = closed_form(cfg, epoch)
        assert engine.base_rate(optimizer) == pytest.approx(expected, rel=1e-6, abs=1e-12), epoch
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * expected, rel=1e-6, abs=1e-12)
        optimizer.step()
        scheduler.step()


class ToyTask:
    """Least squares on 64 fixed points; validate returns the scripted metrics, or minus the loss."""

    columns = ["val_score"]
    select = "val_score"
    lower_is_better = False

    def __init__(self, scripted=None, nan_loss_epoch=None):
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        self.x, self.y = torch.randn(64, 4), torch.randn(64, 1)
        self.scripted, self.nan_loss_epoch, self.epoch = scripted, nan_loss_epoch, 0

    def batches(self, epoch, generator):
        self.epoch = epoch
        order = torch.randperm(64, generator=generator)
        return [(self.x[order[i:i + 16]], self.y[order[i:i + 16]]) for i in range(0, 64, 16)]

    def loss(self, model, batch):
        x, y = batch
        loss = nn.functional.mse_loss(model(x).float(), y)
        return loss * float("nan") if self.epoch == self.nan_loss_epoch else loss

    def validate(self, model):
        if self.scripted:
            return {"val_score": self.scripted[self.epoch]}
        with torch.no_grad():
            return {"val_score": -float(nn.functional.mse_loss(model(self.x), self.y))}

    def status(self, row):
        return f"score {row['val_score']:.3f}"


def toy_fit(tmp_path, task, resume=False, **settings):
    cfg, run = open_run(BaseConfig(**{"epochs": 4, "lr": 0.05, "deterministic": True, **settings}), tmp_path, resume,
                        {"epochs": settings["epochs"]} if resume and "epochs" in settings else None)
    with run:
        return fit(task, cfg, run, {"arch": "toy", "config": cfg.to_dict()}, Console(quiet=True))


def kill_after_epoch(monkeypatch, epoch: int):
    """Make the engine stop (as if killed) right after epoch `epoch`'s checkpoints and history are written."""
    original = engine.write_history

    def write(path, history, fields):
        original(path, history, fields)
        if len(history) == epoch:
            raise KeyboardInterrupt
    monkeypatch.setattr(engine, "write_history", write)
    return lambda: monkeypatch.setattr(engine, "write_history", original)


def assert_same_checkpoints(a_dir, b_dir):
    for name in ("last", "best"):
        a = load_file(a_dir / "checkpoints" / f"{name}.safetensors")
        b = load_file(b_dir / "checkpoints" / f"{name}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_the_best_checkpoint_is_the_highest_validation_metric_and_nan_never_wins(tmp_path):
    history = toy_fit(tmp_path, ToyTask(scripted=[0.5, float("nan"), 0.7, 0.6]))
    assert [r["val_score"] for r in history][0::2] == [0.5, 0.7]
    best_weights = load_file(tmp_path / "checkpoints" / "best.safetensors")  # epoch 3's, not the last (epoch 4)
    last_weights = load_file(tmp_path / "checkpoints" / "last.safetensors")
    assert not all(torch.equal(v, last_weights[k]) for k, v in best_weights.items())
    import json
    best = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert best["epoch"] == 3 and best["val_metric"] == 0.7
    assert (tmp_path / "history.csv").read_text().splitlines()[0] == "epoch,lr,train_loss,val_score,seconds"


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged, match="epoch 3") as stopped:
        toy_fit(tmp_path, ToyTask(nan_loss_epoch=2))
    import json
    assert json.loads((tmp_path / "checkpoints" / "last.json").read_text())["epoch"] == 2
    assert f"last good checkpoint kept in {tmp_path / 'checkpoints'}" in str(stopped.value)
    assert "--precision" not in str(stopped.value)  # fp32: no precision to blame


def test_a_nan_loss_before_any_checkpoint_says_so_and_points_reduced_precision_to_fp32(tmp_path):
    with pytest.raises(TrainingDiverged) as stopped:
        toy_fit(tmp_path, ToyTask(nan_loss_epoch=0), precision="bf16")
    said = str(stopped.value)
    assert "epoch 1, step 1" in said and "no checkpoint had been written yet" in said and "kept in" not in said
    assert "it trained in bf16" in said and said.endswith("try --precision fp32")
    assert not (tmp_path / "checkpoints" / "last.safetensors").exists()


@pytest.mark.parametrize("precision, ema", [("fp32", 0.0), ("bf16", 0.9), ("fp16", 0.0)])
def test_an_interrupted_toy_run_resumes_to_identical_weights(tmp_path, monkeypatch, precision, ema):
    import json
    settings = dict(precision=precision, ema=ema, warmup_epochs=1, optimizer="sgd")
    toy_fit(tmp_path / "whole", ToyTask(), **settings)
    restore = kill_after_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        toy_fit(tmp_path / "parts", ToyTask(), **settings)
    restore()
    assert json.loads((tmp_path / "parts" / "checkpoints" / "last.json").read_text())["epoch"] == 2  # stopped there
    toy_fit(tmp_path / "parts", ToyTask(), resume=True)
    assert_same_checkpoints(tmp_path / "whole", tmp_path / "parts")


def test_reduced_precision_runs_under_autocast(tmp_path):
    dtypes = []

    class Spy(ToyTask):
        def loss(self, model, batch):
            if torch.is_grad_enabled():  # a training step, not the kernel check's forward pass
                dtypes.append(model[0](batch[0]).dtype)
            return super().loss(model, batch)

    toy_fit(tmp_path / "bf16", Spy(), precision="bf16", epochs=1)
    toy_fit(tmp_path / "fp32", Spy(), precision="fp32", epochs=1)
    assert set(dtypes[:4]) == {torch.bfloat16} and set(dtypes[4:]) == {torch.float32}


class FaultyConv(nn.Conv2d):
    """A convolution whose weight gradient is tripled when it runs in reduced precision: a planted kernel fault."""

    def forward(self, x):
        out = super().forward(x)
        return out if out.dtype == torch.float32 else self._conv_forward(x, Tripled.apply(self.weight), self.bias)


class Tripled(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w):
        return w.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * 3


def conv_net(faulty: bool) -> nn.Sequential:
    torch.manual_seed(0)
    conv = (FaultyConv if faulty else nn.Conv2d)(2, 4, 3, padding=1)
    return nn.Sequential(conv, nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(), nn.Linear(4 * 36, 1))


def test_kernel_check_passes_sound_layers_untouched_and_names_a_faulty_one():
    net, x = conv_net(False).train(), torch.randn(8, 2, 6, 6)
    found = precision.layer_inputs(net, lambda: net(x))
    assert [(name, shape) for name, _, shape, _ in found] == [("0", (8, 2, 6, 6)), ("4", (8, 144))]
    rng, stats = torch.get_rng_state(), net[1].running_mean.clone()
    precision.check_kernels(net, lambda: net(x), "bf16", torch.device("cpu"))  # sound: passes
    assert torch.equal(torch.get_rng_state(), rng) and torch.equal(net[1].running_mean, stats)
    assert all(p.grad is None for p in net.parameters())
    assert 0 < precision.gradient_error(net[0], (8, 2, 6, 6), torch.contiguous_format, "bf16",
                                        torch.device("cpu")) < 0.02  # bf16's rounding alone
    faulty = conv_net(True).train()
    assert precision.gradient_error(faulty[0], (8, 2, 6, 6), torch.contiguous_format, "bf16",
                                    torch.device("cpu")) == pytest.approx(2, rel=0.05)
    with pytest.raises(UserError, match=r"--precision bf16 gives wrong gradients on this machine: those of layer 0 "
                                        r"\(FaultyConv, input 8x2x6x6\) differ from fp32's by 2\d\d%.*--precision fp32"):
        precision.check_kernels(faulty, lambda: faulty(x), "bf16", torch.device("cpu"))


def test_training_refuses_reduced_precision_whose_kernels_are_faulty(tmp_path):
    class ConvTask(ToyTask):
        def __init__(self, faulty):
            super().__init__()
            self.model, self.x = conv_net(faulty), torch.randn(64, 2, 6, 6)

    for faulty, precision_, refused in ((True, "bf16", True), (True, "fp32", False), (False, "bf16", False)):
        cfg, run = open_run(BaseConfig(epochs=1, precision=precision_), tmp_path / f"{faulty}{precision_}", False, None)
        with run:
            if refused:
                with pytest.raises(UserError, match="those of layer 0 .FaultyConv"):
                    fit(ConvTask(faulty), cfg, run, {"arch": "toy", "config": cfg.to_dict()}, Console(quiet=True))
            else:
                history = fit(ConvTask(faulty), cfg, run, {"arch": "toy", "config": cfg.to_dict()}, Console(quiet=True))
                assert len(history) == 1
        assert (tmp_path / f"{faulty}{precision_}" / "checkpoints" / "last.safetensors").exists() != refused


def test_configs_share_one_base_and_refuse_bad_values():
    from medconv.segment.config import SegmentConfig
    assert issubclass(TrainConfig, BaseConfig) and issubclass(SegmentConfig, BaseConfig)
    for bad, words in [(dict(lr=float("nan")), "--lr"), (dict(weight_decay=-1), "--weight-decay"),
                       (dict(momentum=-1), "--momentum"), (dict(threads=0), "--threads"),
                       (dict(precision="fp8"), "--precision"), (dict(warmup_epochs=30), "--warmup-epochs"),
                       (dict(milestones=[1.5]), "--milestones")]:
        for cls in (TrainConfig, SegmentConfig):
            with pytest.raises(UserError, match=words):
                cls(**bad).validate()
    assert TrainConfig.from_dict({"amp": True, "epochs": 3}).precision == "fp32"  # a pre-engine config.yaml


def test_one_augmentation_grammar_refuses_keys_a_trainer_cannot_apply():
    from medconv.data.augment import parse_augment
    from medconv.segment.config import SegmentConfig
    assert parse_augment("flips=1,elastic=4").elastic == 4 and parse_augment("strong").rotate == 15
    with pytest.raises(UserError, match="elastic cannot be applied to classification"):
        TrainConfig(augment="elastic=4").validate()
    with pytest.raises(UserError, match="rotate cannot be applied to segmentation"):
        SegmentConfig(augment="rotate=10").validate()
    with pytest.raises(UserError, match="must be a number >= 0"):
        parse_augment("hflip=nan")


def test_classification_may_select_the_lowest_validation_loss(tmp_path):
    import json

    from medconv.classify.train import train
    train(TrainConfig(dataset="synthetic", model_options={"widths": [4], "hidden": [8]}, epochs=3, batch_size=32,
                      select_metric="loss", threads=1), tmp_path, console=Console(quiet=True))
    history = json.loads((tmp_path / "checkpoints" / "last.json").read_text())["history"]
    best = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    lowest = min(history, key=lambda r: r["val_loss"])
    assert best["epoch"] == lowest["epoch"] and best["val_metric"] == -lowest["val_loss"]


def test_classification_killed_and_resumed_ends_bit_identical(tmp_path, monkeypatch):
    from medconv.classify.train import train
    cfg = dict(dataset="synthetic", model_options={"widths": [8, 16], "hidden": [16]}, epochs=3, batch_size=32,
               augment="strong", warmup_epochs=1, deterministic=True, threads=1, seed=3)
    train(TrainConfig(**cfg), tmp_path / "whole", console=Console(quiet=True))
    restore = kill_after_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**cfg), tmp_path / "parts", console=Console(quiet=True))
    restore()
    train(TrainConfig(), tmp_path / "parts", resume=True, console=Console(quiet=True))
    assert_same_checkpoints(tmp_path / "whole", tmp_path / "parts")


def test_detection_killed_and_resumed_ends_bit_identical(tmp_path, monkeypatch):
    from PIL import Image

    from medconv.detect.pipeline import train_detector
    from medconv.segment.config import SegmentConfig
    rng = np.random.default_rng(0)
    rows = ["image,x,y"]
    (tmp_path / "images").mkdir()
    for i in range(6):  # bright blobs on noise, their centres annotated
        image = rng.integers(0, 60, (48, 48, 3)).astype(np.uint8)
        for x, y in rng.integers(6, 42, (4, 2)):
            image[y - 2:y + 3, x - 2:x + 3] = 220
            rows.append(f"im{i}.png,{x + 1},{y + 1}")
        Image.fromarray(image).save(tmp_path / "images" / f"im{i}.png")
    (tmp_path / "points.csv").write_text("\n".join(rows) + "\n")
    cfg = dict(points=str(tmp_path / "points.csv"), images=str(tmp_path / "images"), mode="dense", arch="unet",
               tile=32, target="proximity", radius=3, select_metric="detection_f1", epochs=3, samples_per_epoch=16,
               batch_size=4, val_fraction=0.34, test_fraction=0.17, model_options={"features": "4,4,8,8,16,4"},
               deterministic=True, threads=1, ema=0.5)
    kwargs = dict(tolerance=3, tta=("none",), console=Console(quiet=True))
    train_detector(SegmentConfig(**cfg), tmp_path / "whole", **kwargs)
    restore = kill_after_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train_detector(SegmentConfig(**cfg), tmp_path / "parts", **kwargs)
    restore()
    train_detector(SegmentConfig(), tmp_path / "parts", resume=True, **kwargs)
    assert_same_checkpoints(tmp_path / "whole", tmp_path / "parts")
    assert (tmp_path / "parts" / "detect.json").exists()


def test_a_second_writer_to_a_run_directory_is_refused_and_a_dead_writers_lock_is_taken_over(tmp_path):
    from medconv.training.lock import LOCK_NAME
    cfg, first = open_run(BaseConfig(epochs=2), tmp_path / "run", False, None)
    with pytest.raises(UserError, match=f"pid {__import__('os').getpid()}.*another --out"):
        open_run(BaseConfig(epochs=2), tmp_path / "run", False, None)
    first.release()
    _, again = open_run(BaseConfig(epochs=2), tmp_path / "run", False, None)  # free again once released
    again.release()
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / LOCK_NAME).write_text("pid 999999 on a machine that died\n")  # no process holds it any more
    open_run(BaseConfig(epochs=2), stale, False, None)[1].release()
    with pytest.raises(UserError, match="--warmup-epochs"):  # refused before training: no folder left behind
        open_run(BaseConfig(epochs=2, warmup_epochs=5), tmp_path / "never", False, None)
    assert not (tmp_path / "never").exists()


def test_concurrent_train_commands_into_one_out_one_is_refused(tmp_path):
    import subprocess
    import sys
    args = [sys.executable, "-m", "medconv.cli", "train", "--dataset", "synthetic", "--model-option", "widths=[4]",
            "--model-option", "hidden=[8]", "--batch-size", "32", "--threads", "1", "--out", str(tmp_path / "conc")]
    slow = subprocess.Popen([*args, "--epochs", "40"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        import time
        deadline = time.time() + 120
        while not (tmp_path / "conc" / "config.yaml").exists() and time.time() < deadline:
            time.sleep(0.05)
        second = subprocess.run([*args, "--epochs", "2", "--seed", "2"], capture_output=True, text=True, timeout=120)
    finally:
        slow.kill()
        slow.wait()
    assert second.returncode == 2 and "being written by another medconv run" in second.stderr, second.stderr
    assert len(second.stderr.strip().splitlines()) == 1


def test_outputs_follow_the_umask_and_a_resumed_run_removes_a_killed_writes_temp_files(tmp_path):
    import os
    import stat
    old = os.umask(0o022)
    try:
        toy_fit(tmp_path, ToyTask(), epochs=1)
    finally:
        os.umask(old)
    for name in ("checkpoints/last.safetensors", "checkpoints/last.json", "history.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name  # readable by the group
    leftover = tmp_path / "checkpoints" / ".last.safetensors.abc123.tmp"  # as a kill mid-write leaves it
    leftover.write_bytes(b"half a checkpoint")
    toy_fit(tmp_path, ToyTask(), resume=True, epochs=2)
    assert not leftover.exists()


def test_a_validation_split_of_one_class_is_refused_before_training(tmp_path):
    from PIL import Image

    from medconv.classify.train import train
    rng = np.random.default_rng(0)
    for split, classes in (("train", ("a", "b")), ("val", ("a",)), ("test", ("a", "b"))):
        for c in classes:
            (tmp_path / "images" / split / c).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(
                    tmp_path / "images" / split / c / f"{i}.png")
    cfg = dict(images=str(tmp_path / "images"), size=16, epochs=1, batch_size=4)
    with pytest.raises(UserError, match="validation split holds only class 'a'.*--select-metric acc or loss"):
        train(TrainConfig(**cfg), tmp_path / "run", console=Console(quiet=True))
    assert not (tmp_path / "run").exists()  # refused before anything was written
    train(TrainConfig(**cfg, select_metric="acc"), tmp_path / "run", console=Console(quiet=True))


def test_a_run_gives_the_process_back_its_torch_settings(tmp_path):
    before = engine.torch_settings()
    toy_fit(tmp_path / "a", ToyTask(), epochs=1, threads=1, deterministic=True)
    assert engine.torch_settings() == before  # the Python API trains in its caller's process
    with pytest.raises(TrainingDiverged):
        toy_fit(tmp_path / "b", ToyTask(nan_loss_epoch=0), epochs=1, threads=1, deterministic=True)
    assert engine.torch_settings() == before
