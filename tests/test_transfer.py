"""Pretrained weights (run directory, local file, torchvision name from a cache), first-layer
adaptation, and fine-tuning controls (--finetune, --lr-decay, --unfreeze-every)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file

from medconv.config import TrainConfig
from medconv.data import load_dataset
from medconv.errors import UserError
from medconv.models.registry import build_model
from medconv.training.checkpoint import load_model, read_checkpoint
from medconv.classify.train import train
from medconv.transfer.finetune import layer_groups, optimizer_groups, set_trainable
from medconv.transfer.weights import (
    apply_weights,
    cached_path,
    resolve_weights,
    torchvision_enum,
)


def tiny(data_root, **changes) -> TrainConfig:
    base = dict(dataset="breastmnist", data_root=str(data_root), arch="simple-cnn", epochs=1, batch_size=32,
                train_fraction=0.2, model_options={"widths": [8, 16], "hidden": [16]}, threads=1)
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def source_run(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("source") / "run"
    train(tiny(data_root, dataset="pneumoniamnist", train_fraction=0.05), out)
    return out


def outputs(model, x):
    return model.eval()(x)


def test_run_directory_weights_give_the_runs_predictions(source_run):
    original, meta = load_model(source_run)
    model = build_model("simple-cnn", 1, 2, (28, 28), widths=[8, 16], hidden=[16])
    source = resolve_weights(str(source_run), "simple-cnn")
    assert apply_weights(model, source, "simple-cnn") == []
    assert source.mean == meta["mean"] and source.input_size == 28
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(outputs(model, x), outputs(original, x), rtol=0, atol=0)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_file_weights_give_identical_predictions(tmp_path, suffix):
    torch.manual_seed(0)
    original = torchvision.models.resnet18(num_classes=5)
    path = tmp_path / f"resnet18{suffix}"
    state = {k: v.contiguous() for k, v in original.state_dict().items()}
    torch.save(state, path) if suffix == ".pth" else save_file(state, str(path))
    model = build_model("resnet18", 3, 5, (96, 96))
    apply_weights(model, resolve_weights(str(path), "resnet18"), "resnet18")
    x = torch.randn(2, 3, 96, 96)
    torch.testing.assert_close(outputs(model, x), outputs(original, x), rtol=0, atol=0)


def test_pth_files_are_not_unpickled(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(1), "thing": object()}, path)  # an arbitrary object: refused
    with pytest.raises(UserError, match="not a readable weights file"):
        resolve_weights(str(path), "resnet18")


def test_torchvision_name_loads_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(1)
    original = torchvision.models.resnet18()
    cache = cached_path(torchvision_enum("IMAGENET1K_V1", "resnet18").url)
    assert str(cache).startswith(str(tmp_path))
    cache.parent.mkdir(parents=True)
    torch.save(original.state_dict(), cache)
    source = resolve_weights("ResNet18_Weights.IMAGENET1K_V1", "resnet18")
    assert source.mean == [0.485, 0.456, 0.406] and source.input_size == 224
    model = build_model("resnet18", 3, 1000, (224, 224))
    apply_weights(model, source, "resnet18")
    x = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(outputs(model, x), outputs(original, x), rtol=0, atol=0)


def test_offline_without_cache_is_one_clear_line(tmp_path, cli, data_root, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))  # torch.hub's cache: read when the weights are asked for
    result = cli("train", "--dataset", "breastmnist", "--data-root", data_root, "--arch", "resnet18",
                 "--init-from", "IMAGENET1K_V1", "--epochs", "1", "--out", tmp_path / "run")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not in the local cache" in lines[0] and "--init-from FILE.pth" in lines[0]
    assert "Traceback" not in result.stderr and not (tmp_path / "run" / "metrics.json").exists()


def test_grey_input_from_rgb_weights_equals_grey_copied_into_rgb():
    torch.manual_seed(2)
    rgb = torchvision.models.resnet18(num_classes=3).eval()
    grey = build_model("resnet18", 1, 3, (96, 96))
    notes = apply_weights(grey, resolve_from_model(rgb), "resnet18")
    assert any("3 -> 1 input channels" in n for n in notes)
    x = torch.rand(2, 1, 96, 96)
    torch.testing.assert_close(outputs(grey, x), rgb(x.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4)


def resolve_from_model(model):
    from medconv.transfer.weights import SourceWeights
    return SourceWeights(dict(model.state_dict()), "a test model")


def test_weights_of_another_architecture_are_one_clear_error():
    with pytest.raises(UserError, match=r"do not fit --arch simple-cnn: \d+ tensor"):
        apply_weights(build_model("simple-cnn", 3, 2, (28, 28)), resolve_from_model(torchvision.models.resnet18()),
                      "simple-cnn")


def test_reset_head_keeps_the_body_and_renews_the_head():
    torch.manual_seed(3)
    source = build_model("simple-cnn", 1, 2, (28, 28))
    model = build_model("simple-cnn", 1, 4, (28, 28))
    notes = apply_weights(model, resolve_from_model(source), "simple-cnn")
    assert notes == ["head classifier.5: new, sized to 4 outputs"]
    torch.testing.assert_close(model.features[0].weight, source.features[0].weight)


def test_layer_groups_and_discriminative_rates():
    model = build_model("resnet18", 3, 2, (224, 224))
    groups = layer_groups(model)
    assert groups[0] == ("conv1", ["conv1.weight", "bn1.weight", "bn1.bias"]) and groups[-1][0] == "fc"
    assert len(groups) == 21  # 20 convolutions (3 of them downsampling shortcuts) + fc
    scales = [g["lr_scale"] for g in optimizer_groups(model, 0.5)]
    assert scales[-1] == 1 and scales[-2] == 0.5 and scales[0] == 0.5 ** 20
    assert sum(len(g["params"]) for g in optimizer_groups(model, 0.5)) == len(list(model.parameters()))


def test_finetune_modes_and_gradual_unfreezing():
    model = build_model("simple-cnn", 1, 2, (28, 28), widths=[8, 16], hidden=[16])
    total = sum(p.numel() for p in model.parameters())
    head = sum(p.numel() for p in model.classifier[-1].parameters())
    model.train()
    assert set_trainable(model, "all", 0, 0) == total
    assert set_trainable(model, "head", 0, 0) == head
    assert not model.features[1].training  # frozen batch norm: running statistics kept
    assert set_trainable(model, "from:classifier", 0, 0) == sum(p.numel() for p in model.classifier.parameters())
    counts = [set_trainable(model, "all", 2, epoch) for epoch in range(0, 14, 2)]
    assert counts[0] == head and counts == sorted(counts) and counts[-1] == total
    with pytest.raises(UserError, match="no layer 'layer9'.*top-level layers: features, classifier"):
        set_trainable(model, "from:layer9", 0, 0)


def test_finetune_head_trains_only_the_head(source_run, tmp_path, data_root):
    out = tmp_path / "target"
    train(tiny(data_root, init_from=str(source_run), finetune="head", lr=1e-2), out)
    source, _ = read_checkpoint(source_run / "checkpoints" / "best.safetensors")
    tuned, meta = read_checkpoint(out / "checkpoints" / "last.safetensors")
    body = [k for k in source if k.startswith("model.features.") or k.startswith("model.classifier.2.")]
    assert body and all(torch.equal(source[k], tuned[k]) for k in body)  # running statistics included
    assert not torch.equal(source["model.classifier.5.weight"], tuned["model.classifier.5.weight"])
    source_meta = json.loads((source_run / "checkpoints" / "best.json").read_text())
    assert meta["mean"] == source_meta["mean"]  # trained with the source's normalisation


def test_finetune_without_weights_is_refused(data_root, tmp_path):
    with pytest.raises(UserError, match="only makes sense with --init-from"):
        train(tiny(data_root, finetune="head"), tmp_path / "run")


def test_features_are_cached_and_the_fitted_head_is_scikit_learns(source_run, tmp_path, data_root, monkeypatch):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from medconv.transfer import features as features_module
    from medconv.transfer.heads import fit_head

    cfg = lambda: tiny(data_root, init_from=str(source_run), model_options={})  # options come from the source run
    first = features_module.extract_features(cfg(), cache_dir=tmp_path / "cache")
    assert not first.from_cache and first.layer == "classifier.4" and first.splits["train"][0].shape[1] == 16

    def no_forward(*args, **kwargs):
        raise AssertionError("a forward pass although the features are cached")
    monkeypatch.setattr(features_module, "compute", no_forward)
    again = features_module.extract_features(cfg(), cache_dir=tmp_path / "cache")
    assert again.from_cache and again.path == first.path
    np.testing.assert_array_equal(again.splits["test"][0], first.splits["test"][0])

    result = fit_head(cfg(), tmp_path / "head", cache_dir=tmp_path / "cache")
    assert result["features_from_cache"]
    (x, y), (xt, _) = first.splits["train"], first.splits["test"]
    scaler = StandardScaler().fit(x)
    expected = LogisticRegression(C=result["C"], max_iter=2000).fit(scaler.transform(x), y[:, 0])
    expected = expected.predict_proba(scaler.transform(xt))
    model, meta = load_model(tmp_path / "head")
    info, sets = load_dataset(cfg())
    from medconv.classify.predict import predict_scores
    ours = predict_scores(model, sets["test"].images, meta["mean"], meta["std"], meta["task"])
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_transfer_cli_fit_then_evaluate(source_run, tmp_path, data_root, medconv, cli):
    common = ["--backbone", "simple-cnn", "--weights", source_run, "--dataset", "breastmnist", "--data-root", data_root,
              "--cache", tmp_path / "cache"]
    fitted = medconv("transfer", "fit", *common, "--out", tmp_path / "head")  # the transfer verb's one new process
    assert fitted.returncode == 0, fitted.stderr
    evaluated = cli("evaluate", tmp_path / "head", "--split", "test", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    fit_metrics = json.loads((tmp_path / "head" / "metrics.json").read_text())
    assert json.loads(evaluated.stdout)["auc"] == fit_metrics["test"]["auc"]
    bad = cli("transfer", "extract", *common, "--layer", "layer9")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--layer layer9" in bad.stderr


def test_any_torchvision_model_is_a_backbone(tmp_path):
    model = build_model("mobilenet_v3_small", 1, 5, (64, 64))
    assert model(torch.rand(2, 1, 64, 64)).shape == (2, 5)
    torch.manual_seed(4)
    original = torchvision.models.mobilenet_v3_small(num_classes=5)
    path = tmp_path / "mobilenet.pth"
    torch.save(original.state_dict(), path)
    apply_weights(model, resolve_weights(str(path), "mobilenet_v3_small"), "mobilenet_v3_small")
    x = torch.rand(2, 1, 64, 64)
    torch.testing.assert_close(outputs(model, x), outputs(original, x.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4)
    with pytest.raises(UserError, match="or a torchvision classification model name"):
        build_model("resnet9000", 1, 2, (28, 28))


def test_inception_weights_get_the_input_scaling_torchvision_gives_them(tmp_path, monkeypatch):
    """torchvision builds Inception v3 with transform_input=True for its ported weights: ImageNet-normalised
    input is mapped to (x - 0.5) / 0.5, which medconv's network (transform_input=False) must be fed directly."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(5)
    reference = torchvision.models.inception_v3(weights=None, aux_logits=True, transform_input=True,
                                                init_weights=True).eval()
    cache = cached_path(torchvision_enum("IMAGENET1K_V1", "inception_v3").url)
    cache.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cache)
    source = resolve_weights("IMAGENET1K_V1", "inception_v3")
    assert source.mean == [0.5] * 3 and source.std == [0.5] * 3 and source.input_size == 299
    model = build_model("inception_v3", 3, 1000, (160, 160))
    apply_weights(model, source, "inception_v3")
    x = torch.rand(2, 3, 160, 160, dtype=torch.float64)  # random weights make huge activations: compare in float64
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    ours, theirs = outputs(model.double(), (x - 0.5) / 0.5), reference.double()((x - mean.double()) / std.double())
    torch.testing.assert_close(ours, theirs, rtol=1e-7, atol=1e-7 * float(theirs.abs().max()))


def test_checkpoints_with_one_optimizer_group_still_resume():
    from medconv.training.checkpoint import restore_optimizer
    from medconv.transfer.finetune import optimizer_groups
    model = build_model("simple-cnn", 1, 2, (28, 28), widths=[8, 16], hidden=[16])
    old = torch.optim.AdamW(model.parameters(), lr=1e-3)  # how checkpoints were made before layer groups
    model(torch.rand(4, 1, 28, 28)).sum().backward()
    old.step()
    state = old.state_dict()
    tensors = {f"optimizer.{pid}.{k}": v for pid, entries in state["state"].items() for k, v in entries.items()
               if torch.is_tensor(v)}
    scalars = {f"{pid}.{k}": v for pid, entries in state["state"].items() for k, v in entries.items()
               if not torch.is_tensor(v)}
    new = torch.optim.AdamW(optimizer_groups(model, 1.0), lr=1e-3)
    restore_optimizer(new, tensors, {"optimizer": {"param_groups": state["param_groups"], "scalars": scalars}})
    assert len(new.param_groups) == len(optimizer_groups(model, 1.0)) > 1
    first = next(model.parameters())
    torch.testing.assert_close(new.state[first]["exp_avg"], old.state[first]["exp_avg"])


def test_channels_option_converts_medmnist_like_image_files(data_root):
    from medconv.data.images import LUMA
    grey = load_dataset(tiny(data_root))[1]["test"].images
    rgb_info, rgb = load_dataset(tiny(data_root, channels=3))
    assert rgb_info.channels == 3 and torch.equal(rgb["test"].images, grey.expand(-1, 3, -1, -1))
    from medconv.data import with_channels
    from medconv.data.types import ImageSet
    colour = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    back = with_channels(ImageSet(colour, torch.zeros(2, 1)), 1).images
    expected = (colour.float() * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True).round().to(torch.uint8)
    assert back.shape == (2, 1, 4, 4) and torch.equal(back, expected)
