"""Which weights train, and how fast: frozen layers, discriminative learning rates, gradual unfreezing.

Layer groups: a new group starts at each convolution or fully connected layer (in the order the
network registers them); the normalisation layers after it join its group. The last group is the head.

    --finetune all          every weight trains (the default)
    --finetune head         only the head trains: the network is a frozen feature extractor
    --finetune from:LAYER   LAYER (a dotted module name, e.g. layer3 or features.6) and all after it train
    --lr-decay 0.5          discriminative rates: the head trains at --lr, each earlier group at 0.5 x the next
    --unfreeze-every 2      gradual unfreezing: the head alone first, then one more group every 2 epochs

Frozen batch-norm layers stay in eval mode, so their running statistics stay those of the source data.
"""
from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import UserError


def layer_groups(model: nn.Module) -> list[tuple[str, list[str]]]:
    """[(name of the group's conv/linear layer, [parameter names])] in registration order."""
    groups: list[tuple[str, list[str]]] = []
    for name, module in model.named_modules():
        own = [f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False)]
        if not own:
            continue
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) or not groups:
            groups.append((name, own))
        else:
            groups[-1][1].extend(own)
    return groups


def first_trainable(model: nn.Module, finetune: str) -> int:
    """Index (in named_parameters order) of the first parameter --finetune lets train."""
    names = [n for n, _ in model.named_parameters()]
    if finetune == "all":
        return 0
    if finetune == "head":
        return names.index(layer_groups(model)[-1][1][0])
    if finetune.startswith("from:"):
        layer = finetune[len("from:"):]
        for i, n in enumerate(names):
            if n.startswith(layer + "."):
                return i
        top = [name for name, _ in model.named_children() if any(True for _ in _.parameters())]
        raise UserError(f"--finetune {finetune}: the network has no layer '{layer}' with weights; "
                        f"top-level layers: {', '.join(top)} (see `medconv inspect ARCH` for all names)")
    raise UserError(f"--finetune {finetune!r}: expected all, head or from:LAYER")


def optimizer_groups(model: nn.Module, lr_decay: float) -> list[dict]:
    """Optimizer parameter groups, one per layer group, each with `lr_scale` = lr_decay ** (groups after it)."""
    params = dict(model.named_parameters())
    groups = layer_groups(model)
    return [{"params": [params[n] for n in names], "lr_scale": lr_decay ** (len(groups) - 1 - g), "name": name}
            for g, (name, names) in enumerate(groups)]


def set_trainable(model: nn.Module, finetune: str, unfreeze_every: int, epoch: int) -> int:
    """Set requires_grad for epoch `epoch` (0-based) and put frozen batch norms in eval mode (call after
    model.train()). Returns the number of trainable parameters."""
    groups = layer_groups(model)
    start = first_trainable(model, finetune)
    first_group = max(0, len(groups) - 1 - epoch // unfreeze_every) if unfreeze_every else 0
    unfrozen = {n for names in [g[1] for g in groups[first_group:]] for n in names}
    count = 0
    for i, (name, p) in enumerate(model.named_parameters()):
        p.requires_grad_(i >= start and name in unfrozen)
        count += p.numel() if p.requires_grad else 0
    for module in model.modules():
        if isinstance(module, _BatchNorm) and module.weight is not None and not module.weight.requires_grad:
            module.eval()
    return count
