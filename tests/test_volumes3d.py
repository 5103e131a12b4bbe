"""Volumes through the one training engine (issue 23, first part): MedMNIST 3D flags, 3D networks, volume
augmentation, and a 3D run resumed bit-identically."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from medconv.classify.train import train
from medconv.config import TrainConfig
from medconv.data.augment import AugmentConfig
from medconv.data.datasets import load_dataset
from medconv.data.medmnist import load_medmnist
from medconv.data.transforms import augment, normalise
from medconv.models.registry import build_model

SMALL = dict(dataset="adrenalmnist3d", arch="cnn3d", model_options={"widths": [4, 8], "convs_per_block": 1},
             batch_size=32, train_fraction=0.08, seed=1, deterministic=True, augment="hflip=0.5,vflip=0.5")


def test_adrenalmnist3d_loads_as_volumes(data_root):
    info, sets = load_medmnist("adrenalmnist3d", 28, root=data_root)
    assert info.size == (28, 28, 28) and info.channels == 1 and info.task == "binary-class"
    assert sets["train"].images.shape == (1188, 1, 28, 28, 28) and sets["train"].images.dtype == torch.uint8
    assert [len(s) for s in sets.values()] == [1188, 98, 298]


@pytest.mark.parametrize("arch", ["cnn3d", "hosseini_asl_3d", "resnet18_3d", "resnet50_3d"])
def test_3d_networks_take_volumes(arch):
    net = build_model(arch, 1, 3, (16, 16, 16))
    assert net(torch.rand(2, 1, 16, 16, 16)).shape == (2, 3)


def test_the_resnet_stem_stride_halves_the_first_maps_and_hosseini_asl_has_fully_connected_upper_layers():
    seen = {}
    for stride in (1, 2):
        net = build_model("resnet18_3d", 1, 2, (16, 16, 16), stem_stride=stride).eval()
        net.layer1.register_forward_hook(lambda _m, _i, out, s=stride: seen.__setitem__(s, out.shape[2:]))
        net(torch.rand(1, 1, 16, 16, 16))
    assert seen == {1: (16, 16, 16), 2: (8, 8, 8)}
    net = build_model("hosseini_asl_3d", 1, 2, (16, 16, 16))
    linears = [m for m in net.classifier if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8 * 2 * 2 * 2, 256), (256, 64), (64, 2)]
    assert sum(isinstance(m, torch.nn.Conv3d) for m in net.features.modules()) == 3


def test_deep_supervision_is_a_flag_of_train_and_bf16_trains_3d_networks(tmp_path):
    from medconv.cli import build_parser
    from medconv.cli.options import config_from_args

    args = build_parser().parse_args(["train", "--dataset", "adrenalmnist3d", "--arch", "cnn3d", "--deep-supervision",
                                      "0.3,0.3", "--ds-decay", "--out", str(tmp_path / "x")])
    cfg = config_from_args(args, TrainConfig).validate()
    assert cfg.model_options == {"deep_supervision": "0.3,0.3"} and cfg.ds_decay
    assert build_model("cnn3d", 1, 2, (16, 16, 16), **cfg.model_options).aux_weights == [0.3, 0.3]
    result = train(TrainConfig(**{**SMALL, "precision": "bf16"}, epochs=1), tmp_path / "bf16", score_test=False)
    assert 0 <= result["val"]["auc"] <= 1


def test_a_volume_too_small_for_the_network_is_refused():
    from medconv.errors import UserError

    with pytest.raises(UserError, match="4x4x4 volume is too small for 3 pooling blocks"):
        build_model("cnn3d", 1, 2, (4, 4, 4))


def test_volume_augmentation_flips_turns_and_normalises_per_channel():
    x = torch.rand(3, 2, 4, 5, 5)
    torch.testing.assert_close(augment(x, AugmentConfig(hflip=1.0)), x.flip(-1))
    both = augment(x, AugmentConfig(hflip=1.0, vflip=1.0))
    torch.testing.assert_close(both, x.flip(-1).flip(-2).flip(-3))
    turned = augment(x, AugmentConfig(rotate90=True))
    assert all(any(torch.equal(t, torch.rot90(v, k, (-2, -1))) for k in range(4)) for t, v in zip(turned, x))
    z = normalise(x, [0.5, 0.25], [0.5, 0.25])
    torch.testing.assert_close(z[:, 1], (x[:, 1] - 0.25) / 0.25)


def test_a_resumed_3d_run_ends_with_the_same_weights(tmp_path):
    train(TrainConfig(**SMALL, epochs=2), tmp_path / "straight", score_test=False)
    train(TrainConfig(**SMALL, epochs=1), tmp_path / "resumed", score_test=False)
    train(TrainConfig(**SMALL, epochs=2), tmp_path / "resumed", resume=True, overrides={"epochs": 2},
          score_test=False)
    a = load_file(tmp_path / "straight" / "checkpoints" / "last.safetensors")
    b = load_file(tmp_path / "resumed" / "checkpoints" / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_inspect_reads_a_volume_shape_and_gives_receptive_fields_of_3d_layers():
    from conftest import run_in_process

    done = run_in_process("inspect", "cnn3d", "--input", "1x16x16x16", "--model-option", "widths=[4,8]")
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if "Conv3d" in line]
    assert len(rows) == 4 and "4x16x16x16" in rows[0]
    assert rows[1].split("│")[8].strip() == "5"  # two 3x3x3 convolutions see 5 voxels along each axis


def test_deep_supervision_trains_auxiliary_heads_and_inference_is_the_main_head_alone(tmp_path):
    torch.manual_seed(0)
    deep = build_model("cnn3d", 1, 2, (16, 16, 16), widths=[4, 8, 8], deep_supervision=[0.3, 0.3])
    plain = build_model("cnn3d", 1, 2, (16, 16, 16), widths=[4, 8, 8])
    x = torch.rand(3, 1, 16, 16, 16)
    deep.train()
    deep(x)
    assert len(deep.aux_outputs) == 2 and all(a.shape == (3, 2) for a in deep.aux_outputs)
    plain.load_state_dict({k: v for k, v in deep.state_dict().items() if not k.startswith("heads.")})
    deep.eval(), plain.eval()
    torch.testing.assert_close(deep(x), plain(x), rtol=0, atol=0)
    assert deep.aux_outputs == ()

    cfg = TrainConfig(**{**SMALL, "model_options": {"widths": [4, 8], "convs_per_block": 1,
                                                    "deep_supervision": [0.5]}}, epochs=1, ds_decay=True)
    result = train(cfg, tmp_path / "ds", score_test=False)
    assert "model.heads.0.2.weight" in load_file(tmp_path / "ds" / "checkpoints" / "best.safetensors")
    assert 0 <= result["val"]["auc"] <= 1


def test_cae_pretraining_of_3d_convolutions_is_what_the_classifier_starts_from(tmp_path, monkeypatch):
    """The 3D convolutions are pretrained as autoencoders on the training volumes, and fine-tuning starts from
    exactly those weights (the first training step sees them)."""
    import medconv.classify.train as trainer

    seen = {}
    fit = trainer.fit

    def spy(task, *args, **kwargs):  # the weights handed to the training loop
        seen.update({k: v.clone() for k, v in task.model.state_dict().items()})
        return fit(task, *args, **kwargs)

    captured = {}
    pretrain = trainer.pretrain_convolutions

    def keep(model, *args, **kwargs):
        summary = pretrain(model, *args, **kwargs)
        captured.update({k: v.clone() for k, v in model.state_dict().items()})
        return summary

    monkeypatch.setattr(trainer, "fit", spy)
    monkeypatch.setattr(trainer, "pretrain_convolutions", keep)
    torch.manual_seed(1)
    fresh = build_model("cnn3d", 1, 2, (28, 28, 28), widths=[4, 8], convs_per_block=1).state_dict()
    train(TrainConfig(**SMALL, epochs=1, pretrain="cae", pretrain_epochs=1), tmp_path / "cae", score_test=False)
    convs = [k for k in captured if k.endswith("0.weight") and captured[k].dim() == 5]
    assert len(convs) == 2 and all(torch.equal(seen[k], captured[k]) for k in captured)
    assert all(not torch.equal(captured[k], fresh[k]) for k in convs)  # the pretraining changed them
    assert (tmp_path / "cae" / "pretrain.json").exists()


def volume_manifest(root, shapes=None, split=False):
    """24 NIfTI volumes (12 subjects of 2) whose class shows as a brighter block, and their manifest."""
    import nibabel as nib
    import numpy as np

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = ["path,label,subject" + (",split" if split else "")]
    for i in range(24):
        label, shape = i % 2, (shapes or {}).get(i, (12, 14, 10))
        v = rng.normal(100 + 40 * label, 20, shape).astype(np.float32)
        nib.save(nib.Nifti1Image(v, np.diag([1.2, 1.0, 2.0, 1])), root / f"case{i:02d}.nii.gz")
        lines.append(f"case{i:02d}.nii.gz,{'ad' if label else 'cn'},s{i // 2}"
                     + ("," + ("train" if i < 16 else "val" if i < 20 else "test") if split else ""))
    (root / "volumes.csv").write_text("\n".join(lines) + "\n")
    return root / "volumes.csv"


def test_a_manifest_of_nifti_volumes_trains_a_3d_network_with_subjects_kept_apart(tmp_path):
    from conftest import run_in_process

    from medconv.data.folders import load_manifest

    info, sets = load_manifest(volume_manifest(tmp_path / "v"), val_fraction=0.25, test_fraction=0.25)
    assert info.size == (10, 14, 12) and sets["train"].images.shape[1:] == (1, 10, 14, 12)
    subjects = {split: {p.split("case")[1][:2] for p in s.paths} for split, s in sets.items()}
    pairs = {split: {int(c) // 2 for c in cases} for split, cases in subjects.items()}
    assert not (pairs["train"] & pairs["val"] or pairs["train"] & pairs["test"] or pairs["val"] & pairs["test"])
    done = run_in_process("train", "--manifest", tmp_path / "v" / "volumes.csv", "--arch", "cnn3d", "--model-option",
                          "widths=[4]", "--epochs", "1", "--batch-size", "4", "--out", tmp_path / "run")
    assert done.returncode == 0, done.stderr
    assert "data: volumes: 24, native shape 10x14x12" in done.stderr and "percentiles" in done.stderr
    import csv
    written = list(csv.DictReader(open(tmp_path / "run" / "predictions_test.csv")))
    predicted = run_in_process("predict", tmp_path / "run", *[row["path"] for row in written])
    assert predicted.returncode == 0, predicted.stderr
    rows = list(csv.DictReader(predicted.stdout.splitlines()))
    assert [r["path"] for r in rows] == [r["path"] for r in written]
    for mine, theirs in zip(rows, written):  # predict reads each volume as training did
        assert float(mine["prob_ad"]) == pytest.approx(float(theirs["prob_ad"]), abs=2e-6)


def test_volumes_of_other_shapes_need_a_size(tmp_path):
    from medconv.data.folders import load_manifest
    from medconv.data.reading import Reading
    from medconv.errors import UserError

    csv_path = volume_manifest(tmp_path / "v", shapes={3: (16, 16, 8)})
    with pytest.raises(UserError, match="volumes differ in shape: 10x14x12 \\(23\\), 8x16x16 \\(1\\)"):
        load_manifest(csv_path)
    info, sets = load_manifest(csv_path, Reading(size=(12, 12), fit_mode="pad"), val_fraction=0.25, test_fraction=0.25)
    assert info.size == (12, 12, 12) and all(s.images.shape[2:] == (12, 12, 12) for s in sets.values())


def test_spacing_resamples_manifest_volumes_and_is_refused_without_voxel_spacing(tmp_path):
    from medconv.data.folders import load_manifest
    from medconv.data.reading import Reading
    from medconv.errors import UserError

    manifest = volume_manifest(tmp_path / "v")  # files (i, j, k) 12 x 14 x 10 at 1.2 x 1.0 x 2.0 mm
    info, sets = load_manifest(manifest, Reading(spacing=(2.0, 2.0, 2.0)), val_fraction=0.25, test_fraction=0.25)
    assert sets["train"].images.shape[2:] == (10, 8, 8)  # (D, H, W): 10 slices at 2 mm kept; 14 x 1 mm, 12 x 1.2 mm -> 8
    assert any("resampled to 2x2x2" in line for line in info.summary)
    with pytest.raises(UserError, match="--spacing resamples volumes"):
        load_dataset(TrainConfig(dataset="adrenalmnist3d", arch="cnn3d", spacing="1").validate())
    with pytest.raises(UserError, match="--spacing"):
        TrainConfig(spacing="1,-2,1").validate()


def test_cae_pretraining_on_a_source_domain_then_frozen_convolutions(tmp_path, monkeypatch):
    """--pretrain-data: the convolutions learn on other volumes (a folder of NIfTI files of another size,
    resized to the network's input); --finetune head then keeps them as pretrained while the head trains."""
    import medconv.classify.train as trainer

    volume_manifest(tmp_path / "source")  # 24 volumes of 10x14x12, labels unused
    inputs = {}
    pretrain = trainer.pretrain_convolutions

    def keep(model, images, *args, **kwargs):
        inputs["shape"] = tuple(images.shape)
        summary = pretrain(model, images, *args, **kwargs)
        inputs["weights"] = {k: v.clone() for k, v in model.state_dict().items()}
        return summary

    monkeypatch.setattr(trainer, "pretrain_convolutions", keep)
    cfg = TrainConfig(**SMALL, epochs=1, pretrain="cae", pretrain_epochs=1, pretrain_data=str(tmp_path / "source"),
                      finetune="head")
    train(cfg, tmp_path / "run", score_test=False)
    assert inputs["shape"] == (24, 1, 28, 28, 28)
    after = load_file(tmp_path / "run" / "checkpoints" / "last.safetensors")
    convs = [k for k in inputs["weights"] if k.startswith("features") and inputs["weights"][k].dim() == 5]
    assert len(convs) == 2 and all(torch.equal(after[f"model.{k}"], inputs["weights"][k]) for k in convs)
    head = "classifier.3.weight"
    assert not torch.equal(after[f"model.{head}"], inputs["weights"][head])  # the head trained
