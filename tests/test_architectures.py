"""The classic architectures: published parameter counts, forward shapes at 28 px and native size, LeNet-5's
C3 connection table, GoogLeNet's naive module and auxiliary heads, Inception v3's size limits."""
import pytest
import torch
import torchvision

from medconv.errors import UserError
from medconv.models.googlenet import TABLE1, Inception
from medconv.models.registry import available, build_model

ARCHS = ["lenet5", "simple-cnn", "alexnet", "googlenet", "googlenet-torchvision",
         "resnet18", "resnet34", "resnet50", "resnet101", "inception_v3"]
NATIVE = {"lenet5": 32, "simple-cnn": 28, "inception_v3": 299}  # others: 224


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_architecture_is_registered():
    assert set(ARCHS) <= set(available())


# ImageNet configuration: 3 channels, 1000 classes, 224 px (the 7x7 / 11x11 stems)
@pytest.mark.parametrize("arch, published", [
    ("alexnet", 61_100_840), ("resnet18", 11_689_512), ("resnet34", 21_797_672),
    ("resnet50", 25_557_032), ("resnet101", 44_549_160)])
def test_published_parameter_counts_equal_torchvision(arch, published):
    model = build_model(arch, 3, 1000, (224, 224))
    reference = getattr(torchvision.models, arch)(weights=None)
    assert count(model) == count(reference) == published
    assert str(model) == str(reference)  # the very same network, not only the same count


# Szegedy et al. 2014, "Going deeper with convolutions", Table 1, typed in from the paper (not from the code):
# per Inception module (input channels, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj). Each module's
# input is the previous module's output (#1x1 + #3x3 + #5x5 + pool proj; 3a's is conv2's 192 maps).
PAPER_TABLE1 = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}


def conv_params(c_in: int, c_out: int, k: int, batch_norm: bool) -> int:
    """A k x k convolution's weights, plus its bias (no BN) or BN's scale and shift (BN: the conv has no bias;
    BN's running mean and variance are buffers, not parameters)."""
    return k * k * c_in * c_out + (2 * c_out if batch_norm else c_out)


def paper_inception_params(c_in, c1, r3, c3, r5, c5, pool_proj, batch_norm=False, five=5) -> int:
    return (conv_params(c_in, c1, 1, batch_norm) + conv_params(c_in, r3, 1, batch_norm)
            + conv_params(r3, c3, 3, batch_norm) + conv_params(c_in, r5, 1, batch_norm)
            + conv_params(r5, c5, five, batch_norm) + conv_params(c_in, pool_proj, 1, batch_norm))


def paper_googlenet_params(batch_norm=False, aux=False, five=5) -> int:
    """GoogLeNet's parameter count for 3 x 224 x 224 input and 1000 classes, from Table 1's filter numbers."""
    bn = batch_norm
    stem = conv_params(3, 64, 7, bn) + conv_params(64, 64, 1, bn) + conv_params(64, 192, 3, bn)  # conv1, conv2
    modules = sum(paper_inception_params(*row, batch_norm=bn, five=five) for row in PAPER_TABLE1.values())
    fc = 1024 * 1000 + 1000  # avg pool 7x7 -> 1024 features -> linear 1000 (weights + biases)
    # Each auxiliary classifier (paper section 5): 1x1 conv 128 on 4a (512 maps) / 4d (528 maps), the 5x5/3 average
    # pool leaving 4 x 4, FC 128*16 -> 1024, FC 1024 -> 1000
    heads = sum(conv_params(c, 128, 1, bn) + 128 * 16 * 1024 + 1024 + 1024 * 1000 + 1000 for c in (512, 528))
    return stem + modules + fc + (heads if aux else 0)


def test_googlenet_parameter_count_is_the_papers():
    # the table's input channels follow from its own output columns
    outputs = [c1 + c3 + c5 + pp for _, c1, _, c3, _, c5, pp in PAPER_TABLE1.values()]
    assert [row[0] for row in PAPER_TABLE1.values()] == [192] + outputs[:-1] and outputs[-1] == 1024
    model = build_model("googlenet", 3, 1000, (224, 224), batch_norm=False)
    for name, row in PAPER_TABLE1.items():  # module by module, so an error points at its row
        assert count(getattr(model, name)) == paper_inception_params(*row), name
    assert count(model) == paper_googlenet_params() == 6_998_552
    # conv weights alone (what Table 1's params column counts; test_inspect compares it row by row)
    conv_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv_weights == paper_googlenet_params() - fc_and_biases(batch_norm=False)
    assert count(model.fc) == 1024 * 1000 + 1000
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    # default batch_norm=True: every conv loses its bias and gains BN's scale and shift (+1 per output channel)
    assert count(build_model("googlenet", 3, 1000, (224, 224))) == paper_googlenet_params(batch_norm=True)
    # aux_logits adds the two auxiliary classifiers of the paper
    with_aux = build_model("googlenet", 3, 1000, (224, 224), batch_norm=False, aux_logits=True)
    assert count(with_aux) == paper_googlenet_params(aux=True) == paper_googlenet_params() + 6_379_728
    # torchvision's GoogLeNet (BN) puts 3x3 kernels where the paper has 5x5; otherwise the same shapes and names
    tv = build_model("googlenet-torchvision", 3, 1000, (224, 224))
    assert count(tv) == paper_googlenet_params(batch_norm=True, five=3) == 6_624_904
    ours = build_model("googlenet", 3, 1000, (224, 224)).state_dict()
    theirs = tv.state_dict()
    assert ours["inception3a.branch3.1.conv.weight"].shape == (32, 16, 5, 5)
    assert theirs["inception3a.branch3.1.conv.weight"].shape == (32, 16, 3, 3)
    assert set(ours) == set(theirs)


def fc_and_biases(batch_norm: bool) -> int:
    """The parameters of paper_googlenet_params() that are not conv weights: fc, and one bias per conv output."""
    outs = 64 + 64 + 192 + sum(c1 + r3 + c3 + r5 + c5 + pp for _, c1, r3, c3, r5, c5, pp in PAPER_TABLE1.values())
    return 1024 * 1000 + 1000 + (2 if batch_norm else 1) * outs


def test_inception_v3_parameter_count():
    assert count(build_model("inception_v3", 3, 1000, (299, 299))) == 23_834_568
    assert count(build_model("inception_v3", 3, 1000, (299, 299), aux_logits=True)) == 27_161_264


def test_lenet5_parameter_counts_both_variants():
    full = build_model("lenet5", 1, 10, (32, 32))
    table = build_model("lenet5", 1, 10, (32, 32), c3_table=True)
    assert count(full) == full.effective_parameters() == 61_706
    assert count(table) == 61_706  # the masked entries are still stored in C3's weight tensor
    assert table.effective_parameters() == 60_806  # C3: 60 connections x 25 + 16 biases = 1,516
    assert int(table.c3.mask.sum()) == 60


@pytest.mark.parametrize("arch", [a for a in ARCHS if a != "inception_v3"])
def test_forward_28px_one_channel(arch):
    model = build_model(arch, 1, 5, (28, 28)).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 28, 28)).shape == (2, 5)


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_native_size_three_channels(arch):
    side = NATIVE.get(arch, 224)
    model = build_model(arch, 3, 4, (side, side)).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, side, side)).shape == (2, 4)


def test_inception_v3_minimum_size():
    for side in (28, 74):
        with pytest.raises(UserError, match="--resize 299"):
            build_model("inception_v3", 1, 3, (side, side))
    model = build_model("inception_v3", 1, 3, (75, 75)).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 75, 75)).shape == (2, 3)
    with pytest.raises(UserError, match="aux_logits"):
        build_model("inception_v3", 3, 3, (224, 224), aux_logits=True)


def test_small_input_stems():
    alex = build_model("alexnet", 1, 2, (28, 28))
    assert alex.features[0].kernel_size == (3, 3) and alex.features[0].stride == (1, 1)
    assert isinstance(alex.features[2], torch.nn.Identity)
    assert alex.features(torch.zeros(1, 1, 28, 28)).shape[-2:] == (6, 6)
    for arch in ("googlenet", "googlenet-torchvision"):
        net = build_model(arch, 1, 2, (28, 28))
        assert net.conv1.conv.kernel_size == (3, 3) and net.conv1.conv.stride == (1, 1)
        assert isinstance(net.maxpool1, torch.nn.Identity) and isinstance(net.maxpool2, torch.nn.Identity)
        large = build_model(arch, 1, 2, (224, 224))
        assert large.conv1.conv.kernel_size == (7, 7) and large.conv1.conv.stride == (2, 2)


def test_c3_table_removes_connections():
    torch.manual_seed(0)
    model = build_model("lenet5", 1, 10, (32, 32), c3_table=True)
    x = torch.rand(4, 1, 28, 28)
    model(x).logsumexp(1).sum().backward()
    removed = model.c3.mask.expand_as(model.c3.weight) == 0
    assert removed.sum() == (96 - 60) * 25
    grad = model.c3.weight.grad
    assert torch.all(grad[removed] == 0) and grad[~removed].abs().sum() > 0
    before = model(x)
    with torch.no_grad():  # changing a removed weight does not change the output
        model.c3.weight[removed] = 123.0
    assert torch.equal(model(x), before)
    # C3 map 0 sees S2 maps 0-2, map 15 sees all six (LeCun 1998, Table I)
    assert model.c3.mask[0, :, 0, 0].tolist() == [1, 1, 1, 0, 0, 0] and model.c3.mask[15].sum() == 6


def test_googlenet_modules_follow_table1():
    net = build_model("googlenet", 3, 10, (224, 224))
    assert [getattr(net, n).out_channels for n in TABLE1] == [256, 480, 512, 512, 512, 528, 832, 832, 1024]
    assert net.conv1.conv.kernel_size == (7, 7) and net.conv2.conv.kernel_size == (1, 1)
    assert net.conv3.conv.out_channels == 192
    with pytest.raises(UserError, match="inception"):
        build_model("googlenet", 3, 10, (224, 224), inception="wide")


def test_naive_inception_module_channels():
    module = Inception(192, *TABLE1["inception3a"], naive=True)
    assert module.out_channels == 64 + 128 + 32 + 192 == 416
    assert module(torch.rand(1, 192, 7, 7)).shape == (1, 416, 7, 7)
    net = build_model("googlenet", 1, 3, (28, 28), inception="naive").eval()
    assert [getattr(net, n).out_channels for n in TABLE1] == [416, 832, 1280, 1728, 2176, 2640, 3344, 4048, 4944]
    with torch.no_grad():
        assert net(torch.rand(2, 1, 28, 28)).shape == (2, 3)


def test_auxiliary_classifiers_in_training_mode():
    net = build_model("googlenet", 1, 6, (28, 28), aux_logits=True).train()
    out = net(torch.rand(2, 1, 28, 28))
    assert out.shape == (2, 6)
    assert [a.shape for a in net.aux_outputs] == [(2, 6), (2, 6)]
    loss = out.sum() + 0.3 * sum(a.sum() for a in net.aux_outputs)
    loss.backward()
    assert net.aux1.fc2.weight.grad is not None
    net.eval()
    with torch.no_grad():
        assert net(torch.rand(2, 1, 28, 28)).shape == (2, 6) and net.aux_outputs == ()
    inc = build_model("inception_v3", 3, 6, (299, 299), aux_logits=True).train()
    assert inc(torch.rand(2, 3, 299, 299)).shape == (2, 6)
    assert [a.shape for a in inc.aux_outputs] == [(2, 6)]
