"""SAM-Med3D's image encoder and positional encoding: a 3D ViT with windowed and global attention.

Written here rather than taken from MONAI, for two measured reasons (MONAI 1.6.1):

* MONAI's ViT / ``TransformerBlock`` has no window partitioning, and SAM-Med3D's windowed blocks pad the
  token grid to a multiple of the window (8^3 tokens -> one 14^3 window for ``vit_b_ori``), so their
  attention also sees the zero-padded tokens; the official weights were trained with that.
* SAM-Med3D's 3D relative-position term broadcasts its three axis terms in its own way (see
  :class:`EncoderAttention`), and MONAI's 3D decomposed relative position
  (``monai.networks.blocks.attention_utils.add_decomposed_rel_pos``) is a third function (it indexes the
  third axis' table with the second axis' positions); neither matches the other, and the weights need
  SAM-Med3D's.

The MLPs are MONAI's ``MLPBlock`` (GELU, no dropout). Layout and arithmetic follow SAM-Med3D's
``segment_anything/modeling/image_encoder3D.py`` (Wang et al. 2023), so its checkpoints load through
:mod:`mome.weights.sam_med3d` and give the same outputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from monai.networks.blocks import MLPBlock
from torch import nn


class LayerNorm3d(nn.Module):
    """LayerNorm over the channels of a (B, C, X, Y, Z) tensor (SAM's ``LayerNorm3d``, eps 1e-6)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None, None] * x + self.bias[:, None, None, None]


def relative_positions(q_size: int, k_size: int, table: torch.Tensor) -> torch.Tensor:
    """(q_size, k_size, C) embeddings of every query-key offset along one axis (linearly resized table)."""
    n = int(2 * max(q_size, k_size) - 1)
    if table.shape[0] != n:
        table = F.interpolate(table.reshape(1, table.shape[0], -1).permute(0, 2, 1), size=n,
                              mode="linear").reshape(-1, n).permute(1, 0)
    q = torch.arange(q_size, device=table.device)[:, None] * max(k_size / q_size, 1.0)
    k = torch.arange(k_size, device=table.device)[None, :] * max(q_size / k_size, 1.0)
    return table[((q - k) + (k_size - 1) * max(q_size / k_size, 1.0)).long()]


class EncoderAttention(nn.Module):
    """Multi-head self-attention over a (B, D, H, W, C) token grid with decomposed 3D relative positions."""

    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int, int]):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_d = nn.Parameter(torch.zeros(2 * grid[0] - 1, head_dim))
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * grid[1] - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * grid[2] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, d, h, w, _ = x.shape
        n = d * h * w
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).reshape(
            3, b * self.num_heads, n, -1).unbind(0)
        # The relative-position term with the unscaled query, broadcast exactly as SAM-Med3D's
        # add_decomposed_rel_pos does. That is not the textbook decomposition (its rel_d / rel_h / rel_w
        # land on the key's last axis, and rel_h / rel_w read the query at shifted positions; it only
        # broadcasts on cubic grids), but it is the function the released weights were trained with.
        r_q = q.reshape(b * self.num_heads, d, h, w, -1)
        rel_d = torch.einsum("bdhwc,dkc->bdhwk", r_q, relative_positions(d, d, self.rel_pos_d))
        rel_h = torch.einsum("bdhwc,hkc->bdhwk", r_q, relative_positions(h, h, self.rel_pos_h))
        rel_w = torch.einsum("bdhwc,wkc->bdhwk", r_q, relative_positions(w, w, self.rel_pos_w))
        bias = (rel_d[:, :, :, :, None, None] + rel_h[:, :, :, None, :, None]
                + rel_w[:, :, :, None, None, :]).reshape(b * self.num_heads, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        out = out.view(b, self.num_heads, d, h, w, -1).permute(0, 2, 3, 4, 1, 5).reshape(b, d, h, w, -1)
        return self.proj(out)


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """(B, D, H, W, C) -> (B * windows, window, window, window, C), zero-padding the grid (as SAM-Med3D)."""
    b, d, h, w, c = x.shape
    pd, ph, pw = ((window - s % window) % window for s in (d, h, w))
    if pd or ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph, 0, pd))
    dp, hp, wp = d + pd, h + ph, w + pw
    x = x.view(b, dp // window, window, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, window, window, window, c), (dp, hp, wp)


def window_unpartition(windows: torch.Tensor, window: int, padded: tuple[int, int, int],
                       size: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of :func:`window_partition` (the padding is cut off)."""
    dp, hp, wp = padded
    d, h, w = size
    b = windows.shape[0] // (dp * hp * wp // window ** 3)
    x = windows.view(b, dp // window, hp // window, wp // window, window, window, window, -1)
    x = x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, dp, hp, wp, -1)
    return x[:, :d, :h, :w, :].contiguous()


class EncoderBlock(nn.Module):
    """Pre-norm transformer block; ``window`` > 0 attends within windows, 0 over the whole grid."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, window: int, grid: tuple[int, int, int]):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = EncoderAttention(dim, num_heads, (window,) * 3 if window else grid)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), dropout_rate=0.0, act="GELU", dropout_mode="vista3d")
        self.window = window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window:
            size = tuple(x.shape[1:4])
            x, padded = window_partition(x, self.window)
            x = window_unpartition(self.attn(x), self.window, padded, size)
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class ImageEncoder3D(nn.Module):
    """Patch embedding (a strided Conv3d) + absolute position + transformer blocks + conv neck.

    Input (B, 1, S, S, S) with S = ``img_size``; output (B, ``out_chans``, S/p, S/p, S/p).
    """

    def __init__(self, img_size: int, patch_size: int, embed_dim: int, depth: int, num_heads: int,
                 mlp_ratio: float, out_chans: int, window_size: int, global_attn_indexes: list[int]):
        super().__init__()
        grid = img_size // patch_size
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv3d(1, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            EncoderBlock(embed_dim, num_heads, mlp_ratio, 0 if i in global_attn_indexes else window_size,
                         (grid,) * 3)
            for i in range(depth))
        self.neck = nn.Sequential(nn.Conv3d(embed_dim, out_chans, kernel_size=1, bias=False), LayerNorm3d(out_chans),
                                  nn.Conv3d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
                                  LayerNorm3d(out_chans))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(x).permute(0, 2, 3, 4, 1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 4, 1, 2, 3))


class PositionEmbeddingRandom3D(nn.Module):
    """Random-Fourier positional encoding of 3D positions (SAM-Med3D's ``PositionEmbeddingRandom3D``).

    The features are ``[sin, cos, sin]`` of ``2 pi (2 p - 1) G`` for a fixed Gaussian ``G`` (3 x F), so the
    embedding has ``3 F`` channels. The dense grid encoding stacks the axes as SAM-Med3D does (second
    axis first), so points must be given in the same (array index) order as its click code gives them.
    MONAI's ``vista3d.PositionEmbeddingRandom`` returns ``[sin, cos]`` (2 F channels), another function.
    """

    def __init__(self, num_pos_feats: int):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn((3, num_pos_feats)))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        coords = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords), torch.sin(coords)], dim=-1)

    def forward(self, size: tuple[int, int, int]) -> torch.Tensor:
        """(3F, X, Y, Z) encoding of a grid's voxel centres."""
        x, y, z = size
        grid = torch.ones((x, y, z), device=self.positional_encoding_gaussian_matrix.device)
        first = (grid.cumsum(dim=0) - 0.5) / y
        second = (grid.cumsum(dim=1) - 0.5) / x
        third = (grid.cumsum(dim=2) - 0.5) / z
        return self._encode(torch.stack([second, first, third], dim=-1)).permute(3, 0, 1, 2)

    def forward_with_coords(self, coords: torch.Tensor, image_size: tuple[int, int, int]) -> torch.Tensor:
        """(B, N, 3F) encoding of voxel coordinates (B, N, 3) on an image of ``image_size``."""
        scale = torch.tensor(image_size, dtype=torch.float32, device=coords.device)
        return self._encode(coords.float() / scale)
