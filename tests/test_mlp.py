"""MLPs: numpy backpropagation equals torch autograd; finite differences; vanishing gradients; the `mlp` arch."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medconv.errors import UserError
from medconv.models.mlp import layer_gradient_norms
from medconv.models.mlp_numpy import NumpyMLP
from medconv.models.registry import build_model


def _problem(output: str, n_in: int, n_out: int, n: int, rng: np.random.Generator):
    """Inputs (n, n_in) and targets for `output`: real values, 0/1 per unit, or class labels (n,)."""
    x = rng.normal(size=(n, n_in))
    if output == "linear":
        return x, rng.normal(size=(n, n_out))
    if output == "sigmoid":
        return x, rng.integers(0, 2, size=(n, n_out)).astype(float)
    return x, rng.integers(0, n_out, size=n)


def _torch_loss(output: str, logits: torch.Tensor, y: np.ndarray) -> torch.Tensor:
    """The documented losses, written with torch's own functions."""
    n = len(logits)
    if output == "linear":
        return 0.5 * F.mse_loss(logits, torch.from_numpy(y), reduction="sum") / n
    if output == "sigmoid":
        return F.binary_cross_entropy_with_logits(logits, torch.from_numpy(y), reduction="sum") / n
    return F.cross_entropy(logits, torch.from_numpy(y))


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("output", ["linear", "sigmoid", "softmax"])
def test_numpy_backprop_equals_torch_autograd(depth, activation, output):
    rng = np.random.default_rng(100 * depth + len(activation) + len(output))
    sizes = [6, *rng.integers(3, 9, size=depth), 4]
    net = NumpyMLP(sizes, activation, output, random_state=rng)
    for b in net.biases:  # non-zero biases, so their gradients are tested on a general network
        b += rng.normal(scale=0.3, size=b.shape)
    x, y = _problem(output, sizes[0], sizes[-1], 11, rng)
    activations = net.forward(x)
    weight_grads, bias_grads = net.backward(activations, y)

    model = net.to_torch()
    logits = model(torch.from_numpy(x))
    loss = _torch_loss(output, logits, y)
    loss.backward()
    torch_out = {"linear": logits, "sigmoid": torch.sigmoid(logits), "softmax": logits.softmax(1)}[output]
    assert np.abs(activations[-1] - torch_out.detach().numpy()).max() < 1e-10
    assert abs(net.loss(activations, y) - loss.item()) < 1e-10
    layers = [*model.hidden_layers, model.output_layer]
    assert len(weight_grads) == len(bias_grads) == len(layers) == depth + 1
    for layer, gw, gb in zip(layers, weight_grads, bias_grads):
        assert gw.shape == (layer.in_features, layer.out_features)
        assert np.abs(gw - layer.weight.grad.numpy().T).max() < 1e-6
        assert np.abs(gb - layer.bias.grad.numpy()).max() < 1e-6
    assert np.allclose(net.gradient_norms(), layer_gradient_norms(model), rtol=1e-9)


def test_numpy_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    net = NumpyMLP([3, 4, 3, 2], "tanh", "softmax", random_state=1)
    x, y = rng.normal(size=(5, 3)), rng.integers(0, 2, size=5)
    weight_grads, bias_grads = net.backward(net.forward(x), y)
    analytic, numeric, h = [], [], 1e-6
    for params, grads in ((net.weights, weight_grads), (net.biases, bias_grads)):
        for p, g in zip(params, grads):
            for i in np.ndindex(p.shape):
                old = p[i]
                p[i] = old + h
                up = net.loss(net.forward(x), y)
                p[i] = old - h
                down = net.loss(net.forward(x), y)
                p[i] = old
                numeric.append((up - down) / (2 * h))
                analytic.append(g[i])
    analytic, numeric = np.array(analytic), np.array(numeric)
    assert len(analytic) == 3 * 4 + 4 + 4 * 3 + 3 + 3 * 2 + 2
    rel = np.linalg.norm(analytic - numeric) / (np.linalg.norm(analytic) + np.linalg.norm(numeric))
    assert rel < 1e-5


def test_sigmoid_gradients_vanish_towards_the_input_and_relu_ones_do_not():
    # Measured (10 hidden layers of 32, Glorot init, seeds 0-4): last-hidden / first-layer gradient norm
    # 3e5 - 1.7e6 for sigmoid (f' <= 0.25 per layer), 0.46 - 1.13 for relu.
    for seed in range(3):
        ratio = {}
        for activation in ("sigmoid", "relu"):
            rng = np.random.default_rng(seed)
            x, y = rng.normal(size=(64, 32)), rng.integers(0, 4, size=64)
            net = NumpyMLP([32, *[32] * 10, 4], activation, "softmax", random_state=seed)
            net.backward(net.forward(x), y)
            norms = net.gradient_norms()
            ratio[activation] = norms[-2] / norms[0]
        assert ratio["sigmoid"] > 1e4, ratio
        assert ratio["relu"] < 10, ratio


def test_mlp_architecture_from_the_registry():
    model = build_model("mlp", 1, 2, (28, 28), hidden="64,32", activation="tanh")
    x = torch.randn(5, 1, 28, 28)
    logits = model(x)
    assert logits.shape == (5, 2)
    assert [(m.in_features, m.out_features) for m in model.hidden_layers] == [(784, 64), (64, 32)]
    assert (model.output_layer.in_features, model.output_layer.out_features) == (32, 2)
    assert layer_gradient_norms(model) == [0.0, 0.0, 0.0]
    F.cross_entropy(logits, torch.tensor([0, 1, 0, 1, 1])).backward()
    norms = layer_gradient_norms(model)
    assert len(norms) == 3 and all(n > 0 for n in norms)
    default = build_model("mlp", 3, 4, (8, 8), hidden=[16])
    assert default.activation == "sigmoid" and default.hidden_layers[0].in_features == 3 * 8 * 8
    with pytest.raises(UserError, match="activation 'swish'"):
        build_model("mlp", 1, 2, (28, 28), activation="swish")
    with pytest.raises(UserError, match="hidden"):
        build_model("mlp", 1, 2, (28, 28), hidden="64,x")


def test_torch_weights_round_trip():
    model = build_model("mlp", 1, 3, (4, 4), hidden="5,6", activation="relu").double()
    net = NumpyMLP.from_torch(model, "softmax")
    assert net.sizes == [16, 5, 6, 3]
    x = torch.randn(7, 1, 4, 4, dtype=torch.float64)
    expected = model(x).softmax(1).detach().numpy()
    assert np.abs(net.predict(x.flatten(1).numpy()) - expected).max() < 1e-12
    back = net.to_torch()
    assert torch.equal(back.output_layer.weight, model.output_layer.weight)


def test_fit_learns_xor():
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    y = np.array([0, 1, 1, 0], dtype=float)
    net = NumpyMLP([2, 4, 1], "tanh", "sigmoid", random_state=0)
    history = net.fit(x, y, epochs=2000, lr=0.5)
    assert len(history) == 2000 and history[-1] < 0.05 < history[0]
    assert np.array_equal(net.predict(x)[:, 0] > 0.5, y > 0.5)
