"""Faster MoME inference: gate-first staged forward with expert skipping, channels-last, window choice.

The :class:`~mome.inference.predictor.Predictor` calls :func:`staged_mome_forward` instead of
``MoME.forward`` when expert skipping is asked for. The staged forward computes, per window:

1. every expert's first encoder stage (full resolution, cheap: about 1/8 of a U-Net's operations);
2. the gate on ``[image, f_1, ..., f_N]`` (it needs all N stems, so they are never skipped);
3. each expert's share of the gate weight over the window's brain voxels; experts below
   ``skip_below`` (or outside the ``max_experts`` largest) are not run any further;
4. the remaining experts' encoders and decoders, fused on logits (eq. 1) one expert at a time, so
   only one expert's skips are alive at once.

With nothing skipped the result equals ``MoME.forward(x).logits[0]`` up to float summation order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mome.errors import ConfigError


@dataclass
class StagedOutput:
    """Result of :func:`staged_mome_forward` for one batch of windows.

    Attributes:
        logits: fused full-resolution logits (B, C, X, Y, Z).
        gates: full-resolution gate weights (B, N, C, X, Y, Z) (after the gate activation).
        shares: (N,) each expert's share of the gate weight over the batch (sums to 1).
        kept: indices of the experts that were run past their first stage.
        spread: with ``spread=True``: (B, 1, X, Y, Z) gate-weighted standard deviation of the kept experts'
            lesion probabilities (:func:`mome.inference.uncertainty.expert_spread`), else ``None``.
    """

    logits: torch.Tensor
    gates: torch.Tensor
    shares: torch.Tensor
    kept: list[int]
    spread: torch.Tensor | None = None


def check_skip_options(skip_below: float, max_experts: int | None) -> None:
    """Raise :class:`ConfigError` for a share threshold outside [0, 1) or a non-positive expert count."""
    if not 0.0 <= float(skip_below) < 1.0:
        raise ConfigError(f"skip_experts (a gate-share threshold) must be in [0, 1), got {skip_below}")
    if max_experts is not None and int(max_experts) < 1:
        raise ConfigError(f"max_experts must be >= 1 (or None for no limit), got {max_experts}")


def gate_shares(gates: torch.Tensor, activation: str, region: torch.Tensor | None = None) -> torch.Tensor:
    """Each expert's share of the gate weight, as :func:`mome.inference.outputs.expert_weight_share`.

    Args:
        gates: (B, N, C, X, Y, Z) gate weights.
        activation: ``softmax`` (mean weight) or ``identity`` (mean magnitude |g|), normalised to sum 1.
        region: optional (B, 1, X, Y, Z) booleans (e.g. non-zero input voxels); empty or ``None`` = all.

    Returns:
        (N,) float32 shares summing to 1 (equal shares when all weights are zero).
    """
    values = gates.float()
    if activation != "softmax":
        values = values.abs()
    n = values.shape[1]
    if region is not None and bool(region.any()):
        mask = region.unsqueeze(1).expand_as(values)  # (B, N, C, X, Y, Z)
        sums = torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device))
        means = sums.transpose(0, 1).reshape(n, -1).sum(1) / mask[:, 0].sum()
    else:
        means = values.transpose(0, 1).reshape(n, -1).mean(1)
    total = means.sum()
    if not bool(total > 0):
        return torch.full((n,), 1.0 / n)
    return (means / total).cpu()


def select_experts(shares: torch.Tensor, skip_below: float = 0.0, max_experts: int | None = None) -> list[int]:
    """Indices of the experts to run: share >= ``skip_below``, at most ``max_experts`` largest, never none."""
    order = sorted(range(len(shares)), key=lambda i: -float(shares[i]))
    kept = [i for i in order if float(shares[i]) >= skip_below] or order[:1]
    if max_experts is not None:
        kept = kept[: int(max_experts)]
    return sorted(kept)


@torch.inference_mode()
def staged_mome_forward(model: torch.nn.Module, x: torch.Tensor, *, skip_below: float = 0.0,
                        max_experts: int | None = None, spread: bool = False) -> StagedOutput:
    """Gate-first MoME inference at full resolution, running only the experts the gate needs.

    Args:
        model: a :class:`~mome.model.MoME` (eval mode).
        x: (B, 1, X, Y, Z) input, sizes multiples of the network divisor.
        skip_below: experts whose gate share over the batch's non-zero voxels is below this are
            skipped (0 = run all).
        max_experts: run at most this many experts (largest shares first); ``None`` = no limit.

    Returns:
        :class:`StagedOutput`. Skipped experts contribute nothing to eq. 1; with a ``softmax`` gate the
        kept experts' weights are renormalised to sum to 1 at every voxel, so logits keep their scale.
    """
    check_skip_options(skip_below, max_experts)
    experts = list(model.experts)
    stems = [e.encoder.stages[0](x) for e in experts]
    # under bf16 autocast the stems are bf16: concatenating the image in that dtype halves the
    # 161-channel gate input (the gate's first convolution casts it to bf16 anyway)
    gate_input = torch.cat([x.to(stems[0].dtype), *stems], dim=1)
    gate_levels, _ = model.gate(gate_input, [x.shape[2:]])
    del gate_input
    gates = gate_levels[0]  # (B, N, C, X, Y, Z)
    activation = model.config.gate_activation
    shares = gate_shares(gates, activation, region=x != 0)
    kept = select_experts(shares, skip_below, max_experts)
    weights = gates
    if activation == "softmax" and len(kept) < len(experts):
        kept_sum = gates[:, kept].sum(dim=1, keepdim=True).clamp_min(1e-6)
        weights = gates / kept_sum
    fused = None
    moments = None
    for i in kept:
        logits = _expert_rest(experts[i], stems[i]).float()
        stems[i] = None  # free this expert's stem as soon as it is used
        term = logits * weights[:, i].float()
        fused = term if fused is None else fused + term
        if spread:
            from mome.inference.uncertainty import add_expert_moments

            moments = add_expert_moments(moments, logits, weights[:, i].float())
    if spread:
        from mome.inference.uncertainty import spread_from_moments

        return StagedOutput(fused, gates, shares, kept, spread_from_moments(moments))
    return StagedOutput(fused, gates, shares, kept)


def _expert_rest(expert: torch.nn.Module, stem: torch.Tensor) -> torch.Tensor:
    """An expert's full-resolution logits from its first-stage output (encoder stages 1.., decoder)."""
    skips = [stem]
    for stage in expert.encoder.stages[1:]:
        skips.append(stage(skips[-1]))
    dec = expert.decoder
    h = skips.pop()
    for s in range(len(dec.stages)):
        h = dec.transpconvs[s](h)
        h = dec.stages[s](torch.cat((h, skips.pop()), 1))
    return dec.seg_layers[-1](h)


def to_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """Convert a network's 5D weights to ``channels_last_3d`` in place (inputs must be converted too)."""
    return model.to(memory_format=torch.channels_last_3d)


def whole_volume_fits(padded_shape: tuple[int, ...], max_voxels: int) -> bool:
    """Whether one window over the whole (padded) volume is within ``max_voxels`` voxels."""
    n = 1
    for s in padded_shape:
        n *= int(s)
    return n <= max_voxels
