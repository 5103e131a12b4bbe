"""Layer tables: per layer its geometry, output shape, parameters, multiply-accumulates and receptive field.

`layer_table(model, (3, 224, 224))` lists every leaf module in the order the forward pass runs them;
`depth=1` folds each child of the root into one row (one row per ResNet stage, per Inception block).
Counts follow the usual conventions: a convolution does Cout x Cin/groups x kh x kw MACs per output
position, a linear layer in x out; "weights" counts conv/linear kernels without biases or
normalisation parameters, as GoogLeNet's Table 1 does.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from torch import nn

from .receptive_field import LayerRecord, ReceptiveField, Trace, trace_network

_CONV = (nn.modules.conv._ConvNd,)
_POOL = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)


@dataclass
class LayerRow:
    """One row: a leaf module, or a module folded with everything below it."""
    name: str
    type: str
    kernel: tuple[int, ...] | None
    stride: tuple[int, ...] | None
    padding: tuple[int, ...] | str | None
    dilation: tuple[int, ...] | None
    ceil_mode: bool | None  # pools: output size rounded up
    output_shape: tuple[int, ...] | None  # (C, H, W) or (features,); None if it never ran
    params: int
    weights: int  # conv/linear kernels without biases
    macs: int
    rf_size: tuple[int | float, ...] | None
    rf_jump: tuple[int | float, ...] | None
    rf_start: tuple[int | float, ...] | None
    rf_global: bool
    rf_exceeds_input: bool


@dataclass
class LayerTable:
    """Rows in forward order (modules that never ran, such as auxiliary heads in eval mode, last)."""
    input_shape: tuple[int, ...]
    rows: list[LayerRow]
    total_params: int
    total_weights: int
    total_macs: int
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"input_shape": list(self.input_shape), "total_params": self.total_params,
                "total_weights": self.total_weights, "total_macs": self.total_macs, "notes": self.notes,
                "rows": [asdict(r) for r in self.rows]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_rich(self, title: str | None = None):
        """A rich.table.Table: MACs and parameters in K/M/G, fields larger than the input marked with *."""
        from rich.table import Table

        table = Table(title=title or f"input {'x'.join(map(str, self.input_shape))}",
                      caption="* receptive field larger than the input; global: sees the whole input")
        for col, justify in [("layer", "left"), ("type", "left"), ("kernel/stride/pad", "left"),
                             ("output", "right"), ("params", "right"), ("weights", "right"),
                             ("MACs", "right"), ("RF size", "right"), ("jump", "right"), ("start", "right")]:
            table.add_column(col, justify=justify)
        for r in self.rows:
            geometry = "" if r.kernel is None else f"{_axes(r.kernel)} /{_axes(r.stride)} p{_axes(r.padding)}"
            if r.dilation is not None and any(d != 1 for d in r.dilation):
                geometry += f" d{_axes(r.dilation)}"
            geometry += " ceil" if r.ceil_mode else ""
            size = "global" if r.rf_global else _axes(r.rf_size) + ("*" if r.rf_exceeds_input else "")
            table.add_row(r.name, r.type, geometry, "x".join(map(str, r.output_shape or ())) or "-",
                          human(r.params), human(r.weights), human(r.macs), size,
                          "" if r.rf_global else _axes(r.rf_jump), "" if r.rf_global else _axes(r.rf_start))
        table.add_section()
        table.add_row("total", "", "", "", human(self.total_params), human(self.total_weights),
                      human(self.total_macs), "", "", "")
        return table


def human(n: int | float) -> str:
    """1814073856 -> '1.81G', 11689512 -> '11.7M', 640 -> '640'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(int(n)) if float(n).is_integer() else f"{n:.3g}"


def _axes(values: Any) -> str:
    if values is None:
        return ""
    if isinstance(values, str):
        return values
    values = tuple(values)
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


def _geometry(module: nn.Module, ndim: int) -> tuple[Any, Any, Any, Any, Any]:
    """(kernel, stride, padding, dilation, ceil_mode) of a conv or pool module, per axis; Nones otherwise."""
    def per_axis(v: Any) -> Any:
        if isinstance(v, str):
            return v
        return tuple(v) if isinstance(v, (tuple, list)) else (v,) * ndim
    if isinstance(module, _CONV + _POOL):
        kernel = per_axis(module.kernel_size)
        stride = per_axis(module.stride if module.stride not in (None, (), []) else module.kernel_size)
        dilation = per_axis(getattr(module, "dilation", 1))
        return kernel, stride, per_axis(module.padding), dilation, getattr(module, "ceil_mode", None)
    return None, None, None, None, None


def _weights(module: nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules()
               if isinstance(m, _CONV + (nn.Linear, nn.Bilinear)) and m.weight is not None)


def _row(name: str, record: LayerRecord | None, module: nn.Module, trace: Trace, macs: int) -> LayerRow:
    rf: ReceptiveField | None = record.rf if record is not None else None
    return LayerRow(
        name=name, type=type(module).__name__, **dict(zip(("kernel", "stride", "padding", "dilation", "ceil_mode"),
                                                          _geometry(module, len(trace.spatial)))),
        output_shape=record.output_shape if record is not None else None,
        params=sum(p.numel() for p in module.parameters()), weights=_weights(module), macs=macs,
        rf_size=rf.size if rf else None, rf_jump=rf.jump if rf else None, rf_start=rf.start if rf else None,
        rf_global=bool(rf and rf.is_global), rf_exceeds_input=bool(rf and rf.exceeds(trace.spatial)))


def layer_table(model: nn.Module, input_shape: Sequence[int] = (3, 224, 224), depth: int | None = None) -> LayerTable:
    """Table of `model` run once on (1, *input_shape).

    depth=None: one row per leaf module. depth=d: one row per module d levels below the root (plus
    shallower leaves), summing the parameters and MACs of everything inside it.
    """
    trace = trace_network(model, input_shape)
    modules = dict(model.named_modules())
    children = {name: any(True for _ in m.children()) for name, m in modules.items()}

    def level(name: str) -> int:
        return 0 if name == "" else name.count(".") + 1

    if depth is None:
        chosen = [n for n in modules if not children[n] and (n or len(modules) == 1)]
    else:
        chosen = [n for n in modules if (level(n) == depth or (level(n) < depth and not children[n]))
                  and (n or depth == 0 or len(modules) == 1)]
    ran = sorted((n for n in chosen if n in trace.layers), key=lambda n: trace.layers[n].order)
    rows = [_row(n, trace.layers[n], modules[n], trace, trace.layers[n].macs) for n in ran]
    rows += [_row(n, None, modules[n], trace, 0) for n in chosen if n not in trace.layers]
    unique = {id(p): p for p in model.parameters()}.values()
    return LayerTable(tuple(trace.input_shape), rows, total_params=sum(p.numel() for p in unique),
                      total_weights=_weights(model), total_macs=trace.total_macs, notes=trace.notes)
