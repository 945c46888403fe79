"""Gradient checkpointing for nnU-Net encoders and decoders (training memory at the paper's scale).

With checkpointing on, each encoder stage and each decoder stage keeps only its input for the
backward pass and recomputes its convolutions, norms and activations there (about one extra forward
pass of compute). The maths is unchanged: outputs and gradients equal the plain ones.

The encoder's first stage may receive a list of tensors, concatenated on channels inside the
checkpointed function: the gate's 161-channel full-resolution input is then never stored.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint


def _needs_checkpoint(enabled: bool, *tensors: torch.Tensor) -> bool:
    return enabled and torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def run_encoder(encoder: torch.nn.Module, x: torch.Tensor | list[torch.Tensor],
                use_checkpoint: bool = False) -> list[torch.Tensor]:
    """A ``PlainConvEncoder``'s skips (every stage's output, highest resolution first).

    Args:
        encoder: the encoder (its ``stages`` are run in order).
        x: the input, or a list of tensors to concatenate on channels as the input.
        use_checkpoint: checkpoint every stage (only when gradients are being recorded).
    """
    parts = list(x) if isinstance(x, (list, tuple)) else [x]
    stages = list(encoder.stages)

    def first(*inputs: torch.Tensor) -> torch.Tensor:
        return stages[0](inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1))

    if _needs_checkpoint(use_checkpoint, *parts):
        h = checkpoint(first, *parts, use_reentrant=False)
    else:
        h = first(*parts)
    skips = [h]
    for stage in stages[1:]:
        h = checkpoint(stage, h, use_reentrant=False) if _needs_checkpoint(use_checkpoint, h) else stage(h)
        skips.append(h)
    return skips


def run_decoder(decoder: torch.nn.Module, skips: list[torch.Tensor], use_checkpoint: bool = False):
    """nnU-Net ``UNetDecoder.forward`` with optional per-stage checkpointing; same return value.

    Returns the list of logits per level (highest resolution first) when the decoder's deep
    supervision is on, else the full-resolution logits tensor.
    """
    if not _needs_checkpoint(use_checkpoint, *skips):
        return decoder(skips)
    h = skips[-1]
    outputs = []
    n = len(decoder.stages)
    for s in range(n):
        h = checkpoint(_DecoderStage(decoder, s), h, skips[-(s + 2)], use_reentrant=False)
        if decoder.deep_supervision:
            outputs.append(decoder.seg_layers[s](h))
        elif s == n - 1:
            outputs.append(decoder.seg_layers[-1](h))
    outputs = outputs[::-1]
    return outputs if decoder.deep_supervision else outputs[0]


class _DecoderStage:
    """Decoder stage s as a function of (lower-resolution features, skip): upsample, concatenate, convs."""

    def __init__(self, decoder: torch.nn.Module, s: int):
        self.decoder, self.s = decoder, s

    def __call__(self, below: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.decoder.transpconvs[self.s](below)
        return self.decoder.stages[self.s](torch.cat((up, skip), 1))
