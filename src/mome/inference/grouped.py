"""The N experts of a MoME as one network of grouped convolutions (inference only).

Expert i's channels occupy the block ``[i * C, (i + 1) * C)`` of every feature map, so a 3x3x3
convolution of all experts is one ``Conv3d(..., groups=N)``, InstanceNorm is per channel anyway, and
the first convolution (1 input channel shared by every expert) is a plain convolution with N x 32
outputs. The first stage's output is then exactly the gate's input order ``[f_1, ..., f_N]``.
Weights are copied from the experts once; the copy is exact (same sums per output channel).

Measured in ``benchmarks/inference.py`` (``+grouped``) and ``docs/performance.md``.
"""

from __future__ import annotations

import torch
from torch import nn


class _Block(nn.Module):
    """conv -> InstanceNorm -> LeakyReLU of N experts at once."""

    def __init__(self, blocks: list[nn.Module], shared_input: bool):
        super().__init__()
        ref = blocks[0].conv
        n = len(blocks)
        groups = 1 if shared_input else n
        in_ch = ref.in_channels if shared_input else ref.in_channels * n
        self.conv = nn.Conv3d(in_ch, ref.out_channels * n, ref.kernel_size, ref.stride, ref.padding,
                              bias=ref.bias is not None, groups=groups)
        norm = blocks[0].norm
        self.norm = nn.InstanceNorm3d(ref.out_channels * n, eps=norm.eps, affine=True)
        self.nonlin = nn.LeakyReLU(blocks[0].nonlin.negative_slope, inplace=True)
        with torch.no_grad():
            self.conv.weight.copy_(torch.cat([b.conv.weight for b in blocks], 0))
            if ref.bias is not None:
                self.conv.bias.copy_(torch.cat([b.conv.bias for b in blocks], 0))
            self.norm.weight.copy_(torch.cat([b.norm.weight for b in blocks], 0))
            self.norm.bias.copy_(torch.cat([b.norm.bias for b in blocks], 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlin(self.norm(self.conv(x)))


def _conv_blocks(stage: nn.Module) -> list[nn.Module]:
    return [m for m in stage.modules() if hasattr(m, "conv") and hasattr(m, "norm")]


def _grouped_conv(convs: list[nn.Module], transpose: bool = False) -> nn.Module:
    ref, n = convs[0], len(convs)
    if transpose:  # weight (in, out / groups, k...)
        conv = nn.ConvTranspose3d(ref.in_channels * n, ref.out_channels * n, ref.kernel_size, ref.stride,
                                  bias=ref.bias is not None, groups=n)
    else:  # weight (out, in / groups, k...)
        conv = nn.Conv3d(ref.in_channels * n, ref.out_channels * n, ref.kernel_size, ref.stride, ref.padding,
                         bias=ref.bias is not None, groups=n)
    with torch.no_grad():
        conv.weight.copy_(torch.cat([c.weight for c in convs], 0))
        if ref.bias is not None:
            conv.bias.copy_(torch.cat([c.bias for c in convs], 0))
    return conv


class GroupedExperts(nn.Module):
    """N :class:`~mome.model.ExpertUNet` of one config as one grouped network (full-resolution output).

    Args:
        experts: the experts (same architecture); their weights are copied.
    """

    def __init__(self, experts: list[nn.Module]):
        super().__init__()
        self.n = len(experts)
        n_stages = len(experts[0].encoder.stages)
        self.encoder = nn.ModuleList()
        for s in range(n_stages):
            per_expert = [_conv_blocks(e.encoder.stages[s]) for e in experts]
            blocks = [_Block([pe[j] for pe in per_expert], shared_input=(s == 0 and j == 0))
                      for j in range(len(per_expert[0]))]
            self.encoder.append(nn.Sequential(*blocks))
        decs = [e.decoder for e in experts]
        self.transpconvs = nn.ModuleList(_grouped_conv([d.transpconvs[s] for d in decs], transpose=True)
                                         for s in range(len(decs[0].stages)))
        self.stages = nn.ModuleList()
        for s in range(len(decs[0].stages)):
            per_expert = [_conv_blocks(d.stages[s]) for d in decs]
            self.stages.append(nn.Sequential(*[_Block([pe[j] for pe in per_expert], shared_input=False)
                                               for j in range(len(per_expert[0]))]))
        self.seg = _grouped_conv([d.seg_layers[-1] for d in decs])
        self.num_classes = decs[0].seg_layers[-1].out_channels

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Every expert's first-stage output, (B, N * C0, X, Y, Z) in expert order (the gate's input)."""
        return self.encoder[0](x)

    def rest(self, stem: torch.Tensor) -> torch.Tensor:
        """Full-resolution logits of every expert from :meth:`stem`'s output, (B, N, classes, X, Y, Z)."""
        skips = [stem]
        for stage in self.encoder[1:]:
            skips.append(stage(skips[-1]))
        h = skips.pop()
        for s in range(len(self.stages)):
            up = self.transpconvs[s](h)
            h = self.stages[s](_interleave(up, skips.pop(), self.n))
        out = self.seg(h)
        return out.view(out.shape[0], self.n, self.num_classes, *out.shape[2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(self.stem(x))


def _interleave(a: torch.Tensor, b: torch.Tensor, n: int) -> torch.Tensor:
    """Per expert i: ``cat(a_i, b_i)`` on channels, i.e. nnU-Net's ``cat((up, skip))`` of every expert."""
    shape = a.shape[2:]
    return torch.cat((a.reshape(a.shape[0], n, -1, *shape), b.reshape(b.shape[0], n, -1, *shape)), 2).flatten(1, 2)


@torch.inference_mode()
def grouped_mome_forward(model: nn.Module, grouped: GroupedExperts,
                         x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MoME's full-resolution fused logits and gates with the experts run as one grouped network.

    Returns:
        (logits (B, C, X, Y, Z), gates (B, N, C, X, Y, Z)); equal to ``MoME.forward`` up to float order.
    """
    stems = grouped.stem(x)
    gate_levels, _ = model.gate(torch.cat([x.to(stems.dtype), stems], 1), [x.shape[2:]])
    gates = gate_levels[0]
    logits = grouped.rest(stems).float()
    return (logits * gates.float()).sum(1), gates
