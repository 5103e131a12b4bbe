"""Layer-wise pretraining: the MLP's hidden layers compute exactly the RBM/autoencoder codes."""
import io

import numpy as np
import pytest
import torch
from rich.console import Console

from medconv.config import TrainConfig
from medconv.data.transforms import channel_stats, normalise
from medconv.errors import UserError
from medconv.models.registry import build_model
from medconv.training.pretrain import pixel_matrix, pretrain_mlp


@pytest.fixture(scope="module")
def breast_images(data_root):
    with np.load(data_root / "medmnist" / "breastmnist.npz") as npz:
        return torch.from_numpy(npz["train_images"][:300, None])


@pytest.mark.parametrize("method", ["rbm", "ae"])
def test_pretrained_layers_reproduce_the_stack_codes(method, breast_images):
    torch.manual_seed(0)
    model = build_model("mlp", 1, 2, (28, 28), hidden=[64, 16], activation="sigmoid")
    mean, std = channel_stats(breast_images)
    before = model.hidden_layers[0].weight.clone()
    fitted, summary = pretrain_mlp(model, breast_images, mean, std, method, epochs=3, seed=0)
    assert not torch.equal(before, model.hidden_layers[0].weight)
    assert [r["width"] for r in summary] == [64, 16]
    # the network sees normalised pixels; its first layer must still give the stack's codes of raw pixels
    z = normalise(breast_images.float() / 255, mean, std).flatten(1)
    with torch.no_grad():
        h1 = torch.sigmoid(model.hidden_layers[0](z))
        h2 = torch.sigmoid(model.hidden_layers[1](h1))
    codes1 = fitted[0].transform(pixel_matrix(breast_images))
    assert np.abs(h1.numpy() - codes1).max() < 1e-4
    assert np.abs(h2.numpy() - fitted[1].transform(codes1)).max() < 1e-4


def test_pretraining_needs_sigmoid_mlp(breast_images):
    model = build_model("mlp", 1, 2, (28, 28), hidden=[8], activation="relu")
    with pytest.raises(UserError, match="--activation sigmoid"):
        pretrain_mlp(model, breast_images, [0.5], [0.2], "rbm", epochs=1)
    with pytest.raises(UserError, match="--arch mlp"):
        TrainConfig(arch="resnet18", pretrain="rbm").validate()


def test_train_with_rbm_pretraining_end_to_end(tmp_path, cli, data_root):
    run = tmp_path / "run"
    proc = cli("train", "--dataset", "breastmnist", "--data-root", data_root, "--arch", "mlp", "--hidden", "64,32",
               "--activation", "sigmoid", "--pretrain", "rbm", "--pretrain-epochs", "2", "--epochs", "2", "--out", run)
    assert proc.returncode == 0, proc.stderr
    import json
    pre = json.loads((run / "pretrain.json").read_text())
    assert pre["method"] == "rbm" and [layer["width"] for layer in pre["layers"]] == [64, 32]
    assert (run / "metrics.json").exists()


def test_pretrain_verb_saves_stack_and_pictures(tmp_path, medconv, data_root):
    out = tmp_path / "stack"
    proc = medconv("pretrain", "--data-root", data_root, "--hidden", "32,16", "--method", "rbm", "--epochs", "2",
                   "--out", out)  # the pretrain verb's one test in a new process
    assert proc.returncode == 0, proc.stderr
    from medconv.training.checkpoint import load_model
    model, meta = load_model(out / "checkpoints" / "pretrained.safetensors")
    assert meta["arch"] == "mlp" and [layer.out_features for layer in model.hidden_layers] == [32, 16]
    for name in ("filters.png", "reconstructions.png", "gibbs.png"):
        assert (out / "plots" / name).stat().st_size > 3000


def test_vanishing_gradient_experiment(tmp_path, data_root):
    from medconv.experiments.vanishing_gradient import vanishing_gradient

    result = vanishing_gradient("breastmnist", str(data_root), tmp_path, depths=(2, 8), epochs=1)
    assert (tmp_path / "vanishing_gradient.png").exists()

    def ratio(depth, activation, init="random"):
        run = next(r for r in result["runs"] if (r["depth"], r["activation"], r["init"]) == (depth, activation, init))
        assert len(run["init_norms"]) == depth + 1 and len(run["epoch_norms"]) == 1
        return run["init_norms"][0] / run["init_norms"][-2]  # first / last hidden layer

    # sigmoid gradients vanish towards the input as depth grows; ReLU's far less
    assert ratio(8, "sigmoid") < 1e-3 * ratio(2, "sigmoid")
    assert ratio(8, "relu") > 100 * ratio(8, "sigmoid")


def test_convolutional_autoencoder_pretraining(breast_images):
    from medconv.training.pretrain_cae import (
        conv_inputs,
        pretrain_conv,
        pretrain_convolutions,
    )

    torch.manual_seed(0)
    model = build_model("resnet18", 1, 2, (28, 28))  # strided convolutions and 1x1 shortcuts included
    mean, std = channel_stats(breast_images)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    before = [c.weight.clone() for c in convs]
    log = io.StringIO()
    summary = pretrain_convolutions(model, breast_images[:48], mean, std, epochs=1, console=Console(file=log))
    assert len(summary) == len(convs) == 20
    lines = [line for line in log.getvalue().splitlines() if line.startswith("autoencoder ")]
    assert [line.split()[1] for line in lines] == [f"{k}/20" for k in range(1, 21)]  # a line per layer as it ends
    assert f"{summary[-1]['reconstruction_error']:.4f}" in lines[-1]
    assert all(not torch.equal(b, c.weight) for b, c in zip(before, convs))
    # one layer trained longer reconstructs its inputs better than at the start
    x = normalise(breast_images[:64].float() / 255, mean, std)
    conv = torch.nn.Conv2d(1, 8, 3, padding=1)
    first = pretrain_conv(conv, conv_inputs(torch.nn.Sequential(conv), conv, x), epochs=1)
    later = pretrain_conv(conv, conv_inputs(torch.nn.Sequential(conv), conv, x), epochs=30)
    assert later < 0.5 * first
    with pytest.raises(UserError, match="has none"):
        pretrain_convolutions(build_model("mlp", 1, 2, (28, 28), hidden=[8]), breast_images[:8], mean, std, 1)
