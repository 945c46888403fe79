"""Gating networks: voxel-wise weights per expert and class at every deep-supervision level.

Both gates are a ``PlainConvUNet`` with the experts' topology whose input is the image concatenated
with every expert's first-stage features ([image, f_1, ..., f_N], as in the released code) and whose
N x C output channels are read as (expert, class): channels [C*i, C*i + C) weight expert i.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mome.model.config import MoMEConfig
from mome.model.experts import ExpertUNet


class HierarchicalGate(nn.Module):
    """The paper's gate: its own decoder level l weights the experts' level l (eq. 1)."""

    def __init__(self, config: MoMEConfig, deep_supervision: bool = True):
        super().__init__()
        self.n_experts = config.n_experts
        self.num_classes = config.num_classes
        self.activation = config.gate_activation
        self.net = ExpertUNet(config.gate_config(), deep_supervision=deep_supervision)

    def set_deep_supervision(self, enabled: bool) -> None:
        self.net.set_deep_supervision(enabled)

    def forward(self, gate_input: torch.Tensor | list[torch.Tensor],
                level_shapes: list[torch.Size]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(weights per level, each (B, N, C, X, Y, Z) at that level's resolution; bottleneck features).

        ``gate_input`` is ``[image, f_1, ..., f_N]`` concatenated on channels, or that list itself.
        """
        outs, bottleneck = self._run(gate_input)
        return [_activate(self._split(o), self.activation) for o in outs], bottleneck

    def _run(self, gate_input: torch.Tensor | list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        # a list input is concatenated inside the (possibly checkpointed) first stage
        skips = self.net.encode(gate_input)
        out = self.net.decode(skips)
        return (list(out) if isinstance(out, (list, tuple)) else [out]), skips[-1]

    def _split(self, o: torch.Tensor) -> torch.Tensor:
        return o.view(o.shape[0], self.n_experts, self.num_classes, *o.shape[2:])


class BasicGate(HierarchicalGate):
    """Ablation (paper Table 3): one full-resolution weight map, area-downsampled to every level."""

    def __init__(self, config: MoMEConfig, deep_supervision: bool = True):
        super().__init__(config, deep_supervision=False)

    def set_deep_supervision(self, enabled: bool) -> None:
        # the gate network itself never needs its low-resolution heads
        self.net.set_deep_supervision(False)

    def forward(self, gate_input: torch.Tensor | list[torch.Tensor],
                level_shapes: list[torch.Size]) -> tuple[list[torch.Tensor], torch.Tensor]:
        outs, bottleneck = self._run(gate_input)
        full = _activate(self._split(outs[0]), self.activation)
        weights = [full]
        b, n, c = full.shape[:3]
        flat = full.reshape(b, n * c, *full.shape[3:])
        for shape in level_shapes[1:]:
            # area averaging keeps softmax weights summing to 1 over experts
            down = F.interpolate(flat, size=tuple(shape), mode="area")
            weights.append(down.view(b, n, c, *down.shape[2:]))
        return weights, bottleneck


def _activate(w: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "softmax":
        return torch.softmax(w, dim=1)
    return w


def build_gate(config: MoMEConfig, deep_supervision: bool = True) -> HierarchicalGate:
    """The gate named by ``config.gate_type``."""
    cls = BasicGate if config.gate_type == "basic" else HierarchicalGate
    return cls(config, deep_supervision=deep_supervision)
