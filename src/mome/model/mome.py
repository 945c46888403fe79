"""MoME: N modality experts fused on logits by a gate at every deep-supervision level (eq. 1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mome.model.config import MoMEConfig
from mome.model.experts import ExpertUNet, check_input
from mome.model.gating import build_gate


@dataclass
class MoMEOutput:
    """What :meth:`MoME.forward` returns.

    Attributes:
        logits: fused logits o^l per level, highest resolution first, each (B, C, X, Y, Z).
        expert_logits: when requested, ``expert_logits[i][l]`` is expert i's logits at level l.
        gates: when requested, gate weights per level, each (B, N, C, X, Y, Z).
        bottleneck: when requested, the gate's bottleneck features (B, F, x, y, z) (for t-SNE).
    """

    logits: list[torch.Tensor]
    expert_logits: list[list[torch.Tensor]] | None = None
    gates: list[torch.Tensor] | None = None
    bottleneck: torch.Tensor | None = None


class MoME(nn.Module):
    """Mixture of Modality Experts (Zhang et al., MICCAI 2024).

    ``o^l = sum_i e_i^l * g_i^l`` on logits at every level l. The gate sees the image and the first
    encoder stage of every expert (not detached, so the gate loss also trains the experts' stems).
    """

    def __init__(self, config: MoMEConfig, deep_supervision: bool = True):
        super().__init__()
        self.config = config
        self.experts = nn.ModuleList(ExpertUNet(config.expert, deep_supervision) for _ in config.modalities)
        self.gate = build_gate(config, deep_supervision)
        self._deep_supervision = deep_supervision

    @property
    def modalities(self) -> list[str]:
        return list(self.config.modalities)

    @property
    def deep_supervision(self) -> bool:
        return self._deep_supervision

    def set_deep_supervision(self, enabled: bool) -> None:
        """On for training (all levels), off for inference (only full resolution is computed)."""
        self._deep_supervision = bool(enabled)
        for e in self.experts:
            e.set_deep_supervision(enabled)
        self.gate.set_deep_supervision(enabled)

    @property
    def gradient_checkpointing(self) -> bool:
        return self.gate.net.gradient_checkpointing

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Checkpoint every encoder/decoder stage of the experts and the gate (training memory).

        Measured in ``benchmarks/inference.py --train-memory`` and ``docs/performance.md``; outputs and
        gradients are unchanged, a training step costs about one extra forward pass.
        """
        for net in [*self.experts, self.gate.net]:
            net.set_gradient_checkpointing(enabled)

    def forward(self, x: torch.Tensor, *, return_experts: bool = False, return_gates: bool = False,
                return_bottleneck: bool = False) -> MoMEOutput:
        """Segment ``x`` of shape (B, 1, X, Y, Z); see :class:`MoMEOutput`."""
        check_input(x, self.config.expert)
        expert_logits, features = [], []
        for expert in self.experts:
            logits, stem = expert.forward_with_features(x)
            expert_logits.append(logits)
            features.append(stem)
        level_shapes = [lvl.shape[2:] for lvl in expert_logits[0]]
        # the gate concatenates [x, f_1..f_N] itself (inside its checkpointed first stage when enabled)
        gates, bottleneck = self.gate([x, *features], level_shapes)
        fused = [fuse(level, [e[i] for e in expert_logits]) for i, level in enumerate(gates)]
        return MoMEOutput(
            logits=fused,
            expert_logits=expert_logits if return_experts else None,
            gates=gates if return_gates else None,
            bottleneck=bottleneck if return_bottleneck else None,
        )


def fuse(weights: torch.Tensor, expert_logits: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 1 at one level: ``sum_i weights[:, i] * expert_logits[i]``; weights (B, N, C, ...)."""
    return (weights * torch.stack(expert_logits, dim=1)).sum(dim=1)
