"""Receptive fields measured: the extent of the input gradient of one output unit.

The analytic fields (receptive_field.py) are checked against this. The check runs on a float64 copy of
the network whose weights are positive and batch norms the identity, with every max-pool replaced by an
average pool of the same geometry (a max-pool passes gradient to one input only), so no gradient
cancels to zero by accident.
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import UserError
from .receptive_field import (  # noqa: F401
    _ADAPTIVE,
    _POOL,
    _arg,
    _tuple,
    find_layer,
    first_tensor,
    trace_network,
)


class _Stop(Exception):
    pass


class _AvgForMax(TorchFunctionMode):
    """Max-pools become average pools of the same geometry, so gradient reaches every input of a window."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        pool, adaptive = _POOL.match(name), _ADAPTIVE.match(name)
        if pool and pool.group(1) == "max":
            n = int(pool.group(2))
            if any(d != 1 for d in _tuple(_arg(args, kwargs, 4, "dilation", 1), n)):
                raise UserError("empirical receptive field: dilated max-pooling is not supported")
            kernel = _arg(args, kwargs, 1, "kernel_size")
            stride = _tuple(_arg(args, kwargs, 2, "stride"), n, default=kernel)
            out = getattr(F, f"avg_pool{n}d")(args[0], kernel, stride, _arg(args, kwargs, 3, "padding", 0),
                                              _arg(args, kwargs, 5, "ceil_mode", False))
            return (out, None) if pool.group(3) or _arg(args, kwargs, 6, "return_indices", False) else out
        if adaptive and adaptive.group(1) == "max":
            out = getattr(F, f"adaptive_avg_pool{adaptive.group(2)}d")(args[0], _arg(args, kwargs, 1, "output_size"))
            return (out, None) if adaptive.group(3) or _arg(args, kwargs, 2, "return_indices", False) else out
        return func(*args, **kwargs)


def _positive_copy(model: nn.Module) -> nn.Module:
    """float64 copy in eval mode: conv/linear weights 1/fan_in, biases 0, batch norm the identity."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                if m.running_mean is not None:
                    m.running_mean.zero_()
                    m.running_var.fill_(1.0)
                if m.affine:
                    m.weight.fill_(1.0)
                    m.bias.zero_()
            elif isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() >= 2:
                m.weight.fill_(1.0 / m.weight[0].numel())
                if isinstance(getattr(m, "bias", None), torch.Tensor):
                    m.bias.zero_()
    return net


def empirical_gradient_map(model: nn.Module, input_shape: Sequence[int], layer_name: str) -> np.ndarray:
    """|d (centre unit of `layer_name`, channels summed) / d input|, summed over input channels: (H, W).

    Nonzero exactly where the centre unit's receptive field lies inside the input (see module doc).
    """
    record = find_layer(trace_network(model, input_shape), layer_name)
    net = _positive_copy(model)
    target = dict(net.named_modules())[layer_name]
    seen: dict[str, Any] = {"calls": 0}

    def hook(module, inputs, output):
        seen["calls"] += 1
        if seen["calls"] == record.calls:  # the call whose output the analytic trace kept
            seen["out"] = first_tensor(output)
            raise _Stop

    handle = target.register_forward_hook(hook)
    param = next(net.parameters(), None)
    x = torch.ones(1, *input_shape, dtype=torch.float64, device=param.device if param is not None else None,
                   requires_grad=True)
    try:
        with _AvgForMax():
            net(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    out = seen["out"]
    centre = tuple((n - 1) // 2 for n in out.shape[2:])
    out[(0, slice(None)) + centre].sum().backward()
    return x.grad[0].abs().sum(0).cpu().numpy()


def empirical_receptive_field(model: nn.Module, input_shape: Sequence[int], layer_name: str) -> tuple[int, ...]:
    """Extent (rows, cols) of the nonzero input gradient of the centre unit of `layer_name`'s output.

    Clipped by the input border: compare with `analytic_extent`, not with the raw field size.
    """
    grad = empirical_gradient_map(model, input_shape, layer_name)
    extent = []
    for axis in range(grad.ndim):
        hit = np.flatnonzero(grad.any(axis=tuple(a for a in range(grad.ndim) if a != axis)))
        extent.append(int(hit[-1] - hit[0] + 1) if hit.size else 0)
    return tuple(extent)
