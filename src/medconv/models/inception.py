"""torchvision's Inception v3 with one output tensor (registered as `inception_v3` in classic.py, which
imports this module only when it builds one: torchvision takes a second to import)."""
from __future__ import annotations

import torch
from torchvision.models.inception import Inception3


class InceptionV3(Inception3):
    """torchvision's Inception3 whose `forward` always returns the main logits (N, num_classes).

    With `aux_logits=True`, in training mode the auxiliary logits (N, num_classes) are kept in
    `self.aux_outputs` (a 1-tuple; empty otherwise) instead of torchvision's InceptionOutputs tuple, so
    `medconv train`, which expects one tensor, works unchanged and adds `aux_weight` (0.4, as in
    torchvision's reference training) x their loss.
    """

    aux_outputs: tuple[torch.Tensor, ...] = ()
    aux_weight = 0.4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, aux = self._forward(self._transform_input(x))
        self.aux_outputs = (aux,) if aux is not None else ()
        return x
