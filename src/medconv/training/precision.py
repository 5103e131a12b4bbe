"""Reduced precision for training steps: autocast, and a check of this machine's reduced-precision kernels.

`precision_context` runs a step under autocast (bf16 or fp16; fp32: none). `check_kernels` tests, before a
CPU run's first step, every convolution and linear layer of the network at the input shape and memory layout
it meets in the first batch: its weight, bias and input gradients under autocast against fp32, on random
tensors. Why by hand: some CPUs' oneDNN kernels return wrong gradients in bf16 for some shapes (on a 2-core AMD
EPYC without AMX, a Conv3d's weight gradient over an input of 2 slices came back as garbage, inf or NaN in
every try, while the same layer at 3 or more slices was within 0.3% of fp32), which would train a network
wrongly without a sign, or stop it with a NaN loss an hour in. Tested alone, each layer of medconv's networks
was within 0.7% of fp32 in bf16 on that CPU (bf16 keeps 8 bits of mantissa), so 10% is a fault, not rounding.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from ..errors import UserError

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
TOLERANCE = 0.1  # relative difference from fp32 above which a layer's reduced-precision gradients are a fault
CHECKED = (nn.modules.conv._ConvNd, nn.Linear)


def precision_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast for a training step at `precision` (fp32: none)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """The memory format `x` is laid out in (channels-last when the engine converted the network)."""
    for fmt, dims in ((torch.channels_last, 4), (torch.channels_last_3d, 5)):
        if x.dim() == dims and not x.is_contiguous() and x.is_contiguous(memory_format=fmt):
            return fmt
    return torch.contiguous_format


def layer_inputs(model: nn.Module, forward: Callable[[], object]) -> list[tuple[str, nn.Module, tuple, object]]:
    """[(name, layer, input shape, memory format)] of the convolution and linear layers `forward()` calls, one per
    distinct (layer settings, shape, format). `forward` runs without gradients and leaves the random number
    generator and the network's buffers (batch-norm statistics) as they were."""
    seen: dict[tuple, tuple] = {}
    names = {m: n for n, m in model.named_modules()}

    def catch(module: nn.Module, args: tuple) -> None:
        x = args[0] if args else None
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            shape, fmt = tuple(x.shape), memory_format_of(x)
            key = (type(module).__name__, module.extra_repr(), shape, fmt)
            seen.setdefault(key, (names[module], module, shape, fmt))

    hooks = [m.register_forward_pre_hook(catch) for m in model.modules() if isinstance(m, CHECKED)]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            forward()
    finally:
        for hook in hooks:
            hook.remove()
        for buffer, saved in buffers:
            buffer.copy_(saved)
    return list(seen.values())


def gradient_error(layer: nn.Module, shape: tuple, fmt: torch.memory_format, precision: str,
                   device: torch.device) -> float:
    """The largest relative difference (‖reduced − fp32‖ / ‖fp32‖) among the gradients of `layer`'s input and
    parameters for a random input of `shape` and a random output gradient, under autocast at `precision` vs fp32;
    inf when a reduced-precision gradient is not finite. Touches neither the layer's .grad nor the global RNG."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen).to(device)
    x = (x.contiguous(memory_format=fmt) if fmt != torch.contiguous_format else x).requires_grad_()
    params = [p for p in layer.parameters() if p.requires_grad]
    grads = {}
    for mode in ("fp32", precision):
        with precision_context(mode, device):
            out = layer(x)
        if mode == "fp32":
            upstream = torch.randn(out.shape, generator=gen).to(device)
        grads[mode] = torch.autograd.grad(out, [x, *params], upstream.to(out.dtype))
    worst = 0.0
    for ref, got in zip(grads["fp32"], grads[precision]):
        got = got.float()
        if not torch.isfinite(got).all():
            return float("inf")
        worst = max(worst, float((got - ref).norm() / ref.norm().clamp_min(1e-12)))
    return worst


def check_kernels(model: nn.Module, forward: Callable[[], object], precision: str, device: torch.device) -> None:
    """Refuse `precision` (UserError) when a convolution or linear layer of `model`, at the shape `forward()` (the
    first batch's loss) gives it, gets gradients more than TOLERANCE from fp32's under autocast on this machine."""
    for name, layer, shape, fmt in layer_inputs(model, forward):
        error = gradient_error(layer, shape, fmt, precision, device)
        if not error <= TOLERANCE:
            how = f"differ from fp32's by {error:.0%}" if error < float("inf") else "are not finite"
            raise UserError(f"--precision {precision} gives wrong gradients on this machine: those of layer {name} "
                            f"({type(layer).__name__}, input {'x'.join(map(str, shape))}) {how} (a fault of this "
                            f"CPU's {precision} kernels, not of the data); train with --precision fp32")
