"""Receptive fields of every layer of any network: analytic (one traced forward pass) and empirical (gradients).

Analytic: a `TorchFunctionMode` sees every torch operation of one forward pass on a dummy input
(1, C, *spatial) and carries, for each tensor, its receptive field per spatial axis: size r, jump j
(input pixels between adjacent units) and start s (input coordinate of the centre of unit 0; negative
with padding). Convolutions and max/average pools (module or functional) use the standard recurrences

    k_eff = d (k - 1) + 1,   r' = r + (k_eff - 1) j,   j' = j stride,   s' = s + ((k_eff - 1) / 2 - p) j

`F.pad` shifts s by (left padding) x j. Operations whose output lies on the same grid as their inputs
(activations, batch norm, dropout, `+` of residual branches, `torch.cat` of parallel branches) take the
union of their inputs' fields; for branches centred alike, as in ResNet, GoogLeNet and Inception, this
is the field of the largest branch. Anything that leaves the grid (global/adaptive pooling to another
size, flatten, linear, reshapes) makes the field *global*: the whole input. Transposed convolutions
and interpolation are treated as global too (listed in `Trace.notes`).

Empirical: the gradient of the centre unit of a layer (all channels summed) w.r.t. the input, on a
copy of the model in float64 whose conv/linear weights are all 1/fan_in (no cancellation, no
underflow), biases 0, batch norm the identity, and max-pools replaced by average pools of the same
kernel/stride/padding (a max-pool passes gradient to one input only, which would hide most of the
field). Only the geometry matters, so this changes nothing the analytic field describes.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

from ..errors import UserError

_POOL = re.compile(r"^_?(max|avg)_pool([123])d(_with_indices)?$")
_ADAPTIVE = re.compile(r"^adaptive_(max|avg)_pool([123])d(_with_indices)?$")
_CONV = re.compile(r"^conv([123])d$")
_KNOWN_GLOBAL = {"linear", "flatten", "view", "reshape", "mean", "sum", "amax", "amin", "max", "min",
                 "squeeze", "unsqueeze", "__getitem__", "select", "permute", "transpose", "t", "matmul"}


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of the units of one tensor, per spatial axis, in input pixels.

    size: r, the extent seen by one unit; jump: j, the input distance between adjacent units;
    start: s, the input coordinate of unit 0's centre. `is_global`: every unit sees the whole input.
    """
    size: tuple[int | float, ...]
    jump: tuple[int | float, ...]
    start: tuple[int | float, ...]
    is_global: bool = False

    @staticmethod
    def identity(ndim: int) -> "ReceptiveField":
        return ReceptiveField((1,) * ndim, (1,) * ndim, (0,) * ndim)

    def span(self, index: Sequence[int]) -> list[tuple[float, float]]:
        """(first, last) input coordinate seen by the unit at `index`, per axis (not clipped)."""
        return [(s + i * j - (r - 1) / 2, s + i * j + (r - 1) / 2)
                for r, j, s, i in zip(self.size, self.jump, self.start, index)]

    def centre_extent(self, output_spatial: Sequence[int], input_spatial: Sequence[int]) -> tuple[int, ...]:
        """Extent (rows, cols, ...) of the centre unit's field clipped to the input, as a gradient shows it."""
        index = [0] * len(output_spatial) if self.is_global else [(n - 1) // 2 for n in output_spatial]
        out = []
        for (lo, hi), n in zip(self.span(index), input_spatial):
            lo, hi = max(math.ceil(lo), 0), min(math.floor(hi), n - 1)
            out.append(max(hi - lo + 1, 0))
        return tuple(out)

    def exceeds(self, input_spatial: Sequence[int]) -> bool:
        """True when one unit's field is larger than the input along some axis."""
        return any(r > n for r, n in zip(self.size, input_spatial))


def _union(fields: list[ReceptiveField]) -> ReceptiveField:
    """Field of a unit that sees the units of several same-grid tensors (residual `+`, `cat`)."""
    if len(fields) == 1:
        return fields[0]
    size, start = [], []
    for axis in range(len(fields[0].size)):
        spans = [f.span([0] * len(f.size))[axis] for f in fields]
        lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
        size.append(_num(hi - lo + 1))
        start.append(_num((lo + hi) / 2))
    jump = tuple(max(f.jump[a] for f in fields) for a in range(len(size)))
    return ReceptiveField(tuple(size), jump, tuple(start), any(f.is_global for f in fields))


def _whole(rf: ReceptiveField, spatial: Sequence[int]) -> ReceptiveField:
    """Global field: what all `spatial` units of a tensor with field `rf` see together."""
    if rf.is_global:
        return rf
    spans = [(lo, hi + (n - 1) * j) for (lo, hi), n, j in zip(rf.span([0] * len(spatial)), spatial, rf.jump)]
    size = tuple(_num(hi - lo + 1) for lo, hi in spans)
    return ReceptiveField(size, size, tuple(_num((lo + hi) / 2) for lo, hi in spans), True)


def _window(rf: ReceptiveField, kernel, stride, padding, dilation) -> ReceptiveField:
    """Field after a sliding window (convolution or pool) with per-axis kernel/stride/padding/dilation."""
    size, jump, start = [], [], []
    for r, j, s, k, st, p, d in zip(rf.size, rf.jump, rf.start, kernel, stride, padding, dilation):
        keff = d * (k - 1) + 1
        size.append(_num(r + (keff - 1) * j))
        start.append(_num(s + ((keff - 1) / 2 - p) * j))
        jump.append(_num(j * st))
    return ReceptiveField(tuple(size), tuple(jump), tuple(start), rf.is_global)


def _tuple(value: Any, n: int, default: Any = None) -> tuple:
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        value = default
    if isinstance(value, (list, tuple, torch.Size)):
        return tuple(value) * n if len(value) == 1 else tuple(value)
    return (value,) * n


def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any = None) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def first_tensor(obj: Any) -> torch.Tensor | None:
    return next(_tensors(obj), None)


@dataclass
class LayerRecord:
    """What one traced module did: its output (batch axis dropped), that output's field, its MACs."""
    name: str
    module: nn.Module
    order: int
    calls: int = 0
    output_shape: tuple[int, ...] | None = None
    rf: ReceptiveField | None = None
    macs: int = 0


@dataclass
class Trace:
    """One forward pass on (1, *input_shape): module records in order of first call, total MACs."""
    input_shape: tuple[int, ...]
    layers: dict[str, LayerRecord]
    total_macs: int
    notes: list[str] = field(default_factory=list)

    @property
    def spatial(self) -> tuple[int, ...]:
        return self.input_shape[1:]


class _Tracer(TorchFunctionMode):
    """Carries a ReceptiveField for every tensor derived from the input; counts conv/linear MACs."""

    def __init__(self, ndim: int):
        super().__init__()
        self.ndim = ndim
        self.fields: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.stack: list[LayerRecord] = []
        self.total_macs = 0
        self.notes: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name == "linear" or _CONV.match(name) or name.startswith("conv_transpose"):
            weight, x, result = _arg(args, kwargs, 1, "weight"), _arg(args, kwargs, 0, "input"), first_tensor(out)
            if isinstance(weight, torch.Tensor) and result is not None and weight.dim() >= 2:
                if name == "linear":  # in x out per row
                    positions = result.numel() // result.shape[-1]
                elif name.startswith("conv_transpose"):  # every input position meets the whole kernel
                    positions = math.prod(x.shape[2:]) * x.shape[0]
                else:  # Cout x Cin/groups x kernel per output position
                    positions = math.prod(result.shape[2:]) * result.shape[0]
                macs = weight.numel() * positions
                self.total_macs += macs
                for record in self.stack:
                    record.macs += macs
        outputs = list(_tensors(out))
        if not outputs:
            return out
        known = [(t, self.fields[t]) for t in _tensors((args, kwargs)) if t in self.fields]
        if not known:
            return out
        x = _arg(args, kwargs, 0, "input")
        rf = self.fields.get(x) if isinstance(x, torch.Tensor) else None
        new = self._geometry(name, args, kwargs, x, rf) if rf is not None and not rf.is_global else None
        for o in outputs:
            self.fields[o] = new if new is not None else self._elementwise(name, o, known)
        return out

    def _geometry(self, name: str, args: tuple, kwargs: dict, x: torch.Tensor,
                  rf: ReceptiveField) -> ReceptiveField | None:
        """Field after a conv, pool, pad or adaptive pool of `x`; None for any other operation."""
        n = self.ndim
        if _CONV.match(name):
            kernel = tuple(_arg(args, kwargs, 1, "weight").shape[2:])
            stride = _tuple(_arg(args, kwargs, 3, "stride", 1), n)
            dilation = _tuple(_arg(args, kwargs, 5, "dilation", 1), n)
            padding = _arg(args, kwargs, 4, "padding", 0)
            if padding == "valid":
                padding = 0
            elif padding == "same":
                padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
            return _window(rf, kernel, stride, _tuple(padding, n), dilation)
        if m := _POOL.match(name):
            kernel = _tuple(_arg(args, kwargs, 1, "kernel_size"), n)
            stride = _tuple(_arg(args, kwargs, 2, "stride"), n, default=kernel)
            padding = _tuple(_arg(args, kwargs, 3, "padding", 0), n)
            dilation = _tuple(_arg(args, kwargs, 4, "dilation", 1), n) if m.group(1) == "max" else (1,) * n
            return _window(rf, kernel, stride, padding, dilation)
        if name == "pad":
            pad = list(_arg(args, kwargs, 1, "pad")) + [0] * 2 * n
            left = [pad[2 * (n - 1 - a)] for a in range(n)]
            start = tuple(_num(s - p * j) for s, p, j in zip(rf.start, left, rf.jump))
            return ReceptiveField(rf.size, rf.jump, start)
        if _ADAPTIVE.match(name):
            size_in = x.shape[-n:]
            wanted = _tuple(_arg(args, kwargs, 1, "output_size"), n)
            size_out = [i if o is None else o for i, o in zip(size_in, wanted)]
            if all(o == i for o, i in zip(size_out, size_in)):
                return rf
            if all(i % o == 0 and o > 1 for o, i in zip(size_out, size_in)):  # a plain pool
                kernel = tuple(i // o for o, i in zip(size_out, size_in))
                return _window(rf, kernel, kernel, (0,) * n, (1,) * n)
            return _whole(rf, size_in)
        return None

    def _elementwise(self, name: str, out: torch.Tensor, known: list) -> ReceptiveField:
        """Same grid as an input: union of the inputs' fields; otherwise the whole input (global)."""
        n = self.ndim
        same = [rf for t, rf in known  # same last n axes: element-wise, or a per-channel selection
                if min(t.dim(), out.dim()) > n and t.shape[-n:] == out.shape[-n:]]
        if same:
            return _union(same + [rf for _, rf in known if rf.is_global])
        if name not in _KNOWN_GLOBAL and not _ADAPTIVE.match(name) and not all(rf.is_global for _, rf in known):
            self.notes.add(f"'{name}' changes the spatial grid: treated as global")
        return _union([_whole(rf, t.shape[-n:]) if t.dim() >= n + 1 else rf for t, rf in known])


def trace_network(model: nn.Module, input_shape: Sequence[int]) -> Trace:
    """Run `model` once (eval mode, no grad) on zeros (1, *input_shape); record every module's output.

    input_shape: (C, H, W), or (C, L) / (C, D, H, W). Each record holds the output shape without the
    batch axis, its receptive field and the conv/linear multiply-accumulates done inside the module.
    A module called several times keeps its last output and sums its MACs. The pass runs on the
    "meta" device (shapes only, no arithmetic), or for real if the network cannot run there.
    """
    input_shape = tuple(int(v) for v in input_shape)
    if len(input_shape) < 2:
        raise UserError(f"input shape {input_shape}: expected (C, H, W) or (C, L) or (C, D, H, W)")
    was_training = model.training
    model.eval()
    try:
        try:
            return _trace(model, input_shape, meta=True)
        except Exception:  # noqa: BLE001  (an op without a meta kernel, data-dependent code, a bad shape)
            pass
        try:
            return _trace(model, input_shape, meta=False)
        except RuntimeError as exc:
            raise UserError(f"input shape {input_shape}: the network cannot run on it "
                            f"({str(exc).splitlines()[0]})") from None
    finally:
        model.train(was_training)


def _trace(model: nn.Module, input_shape: tuple[int, ...], meta: bool) -> Trace:
    tracer = _Tracer(len(input_shape) - 1)
    layers: dict[str, LayerRecord] = {}

    def pre(record: LayerRecord):
        def hook(module, inputs):
            if record.name not in layers:
                record.order = len(layers)
                layers[record.name] = record
            tracer.stack.append(record)
        return hook

    def post(record: LayerRecord):
        def hook(module, inputs, output):
            if tracer.stack and tracer.stack[-1] is record:
                tracer.stack.pop()
            record.calls += 1
            out = first_tensor(output)
            if out is not None:
                record.output_shape = tuple(out.shape[1:])
                record.rf = tracer.fields.get(out)
        return hook

    handles = []
    for name, module in model.named_modules():
        record = LayerRecord(name, module, -1)
        handles += [module.register_forward_pre_hook(pre(record)), module.register_forward_hook(post(record))]
    state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    param = next(iter(state.values()), None)
    device = "meta" if meta else (param.device if param is not None else None)
    dtype = param.dtype if param is not None and param.is_floating_point() else None
    x = torch.zeros(1, *input_shape, device=device, dtype=dtype)
    try:
        with torch.no_grad(), tracer:
            tracer.fields[x] = ReceptiveField.identity(len(input_shape) - 1)
            if meta:
                torch.func.functional_call(model, {k: v.to("meta") for k, v in state.items()}, (x,))
            else:
                model(x)
    finally:
        for h in handles:
            h.remove()
    return Trace(input_shape, layers, tracer.total_macs, sorted(tracer.notes))


def receptive_fields(model: nn.Module, input_shape: Sequence[int]) -> dict[str, ReceptiveField]:
    """Receptive field of every module's output, by module name ("" is the whole model)."""
    return {name: r.rf for name, r in trace_network(model, input_shape).layers.items() if r.rf is not None}


def find_layer(trace: Trace, layer_name: str) -> LayerRecord:
    """The record of `layer_name`, which must have a spatial output; a UserError naming the choices if not."""
    record = trace.layers.get(layer_name)
    if record is None or record.rf is None or record.output_shape is None:
        names = ", ".join(n for n, r in trace.layers.items() if n and r.rf is not None and not r.rf.is_global)
        raise UserError(f"layer '{layer_name}': not a layer with a spatial output; expected one of {names}")
    return record


def last_spatial_layer(model: nn.Module, input_shape: Sequence[int]) -> str:
    """Name of the module finishing last whose output is still a (non-global) spatial map."""
    trace = trace_network(model, input_shape)
    ndim = len(trace.input_shape)
    best, best_end = "", -1
    for name, r in trace.layers.items():
        if name and r.rf is not None and not r.rf.is_global and r.output_shape and len(r.output_shape) == ndim:
            end = max(trace.layers[n].order for n in trace.layers if n == name or n.startswith(name + "."))
            if end > best_end or (end == best_end and len(name) < len(best)):
                best, best_end = name, end
    if not best:
        raise UserError("the network has no layer with a spatial output")
    return best


def analytic_extent(model: nn.Module, input_shape: Sequence[int], layer_name: str) -> tuple[int, ...]:
    """Extent (rows, cols) of the analytic field of the layer's centre unit, clipped to the input."""
    trace = trace_network(model, input_shape)
    record = find_layer(trace, layer_name)
    return record.rf.centre_extent(record.output_shape[1:], trace.spatial)
