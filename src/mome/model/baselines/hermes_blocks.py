"""Hermes's building blocks: prior tokens, two-way cross-attention fusion, dynamic mask head, modality head.

Shapes: feature maps are (B, C, X, Y, Z); token sequences are (B, T, C). All attention uses
``nn.MultiheadAttention`` (PyTorch's fused scaled-dot-product kernels) with ``C // head_dim`` heads.
"""

from __future__ import annotations

import torch
from torch import nn


class FeedForward(nn.Sequential):
    """Linear -> GELU -> Linear (a transformer MLP)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim))


def attention_heads(dim: int, head_dim: int) -> int:
    """The largest head count <= dim // head_dim that divides ``dim`` (at least 1)."""
    heads = max(1, dim // head_dim)
    while dim % heads:
        heads -= 1
    return heads


class PriorAttentionBlock(nn.Module):
    """One two-way exchange between image tokens and prior tokens (pre-norm, residual).

    1. image -> prior: the priors attend to the image tokens (they gather what this image looks like),
       then a feed-forward layer updates them;
    2. prior -> image: the image tokens attend to the updated priors (knowledge is injected into every
       voxel), then a feed-forward layer updates them.

    Args:
        dim: channels of the image tokens and the priors.
        head_dim: channels per attention head (heads = max(1, dim // head_dim)).
        mlp_ratio: hidden width of the feed-forward layers, in multiples of ``dim``.
    """

    def __init__(self, dim: int, head_dim: int = 32, mlp_ratio: int = 4):
        super().__init__()
        heads = attention_heads(dim, head_dim)
        self.prior_norm_q = nn.LayerNorm(dim)
        self.image_norm_kv = nn.LayerNorm(dim)
        self.image_to_prior = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.prior_ffn_norm = nn.LayerNorm(dim)
        self.prior_ffn = FeedForward(dim, mlp_ratio * dim, dim)
        self.image_norm_q = nn.LayerNorm(dim)
        self.prior_norm_kv = nn.LayerNorm(dim)
        self.prior_to_image = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.image_ffn_norm = nn.LayerNorm(dim)
        self.image_ffn = FeedForward(dim, mlp_ratio * dim, dim)

    def forward(self, image: torch.Tensor, priors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image (B, N, C), priors (B, T, C) -> updated (image, priors)."""
        kv = self.image_norm_kv(image)
        priors = priors + self.image_to_prior(self.prior_norm_q(priors), kv, kv, need_weights=False)[0]
        priors = priors + self.prior_ffn(self.prior_ffn_norm(priors))
        kv = self.prior_norm_kv(priors)
        image = image + self.prior_to_image(self.image_norm_q(image), kv, kv, need_weights=False)[0]
        image = image + self.image_ffn(self.image_ffn_norm(image))
        return image, priors


class PriorFusionLayer(nn.Module):
    """Learnable task and modality tokens of one U-Net stage, fused with its feature map.

    Every fusion layer owns its tokens (as in Hermes): one token per task and ``modality_tokens`` tokens
    per modality, in the stage's channel width. For each sample, its task token and its modality's tokens
    are selected, exchanged with the stage's features by :class:`PriorAttentionBlock` s, and returned as
    "posterior" tokens (task first, then modality).

    Args:
        dim: the stage's channels.
        n_tasks, n_modalities: vocabulary sizes.
        modality_tokens: tokens per modality (Hermes: 10).
        blocks: number of attention blocks.
        head_dim, mlp_ratio: see :class:`PriorAttentionBlock`.
    """

    def __init__(self, dim: int, n_tasks: int, n_modalities: int, modality_tokens: int, blocks: int,
                 head_dim: int = 32, mlp_ratio: int = 4):
        super().__init__()
        self.task_tokens = nn.Parameter(nn.init.xavier_uniform_(torch.empty(n_tasks, dim)))
        self.modality_tokens = nn.Parameter(
            nn.init.xavier_uniform_(torch.empty(n_modalities, modality_tokens, dim)))
        self.blocks = nn.ModuleList(PriorAttentionBlock(dim, head_dim, mlp_ratio) for _ in range(blocks))

    def forward(self, x: torch.Tensor, task: torch.Tensor, modality: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, C, X, Y, Z), task and modality (B,) indices -> (x, task posterior (B, 1, C), modality
        posteriors (B, L, C))."""
        b, c = x.shape[:2]
        spatial = x.shape[2:]
        priors = torch.cat([self.task_tokens[task].unsqueeze(1), self.modality_tokens[modality]], dim=1)
        tokens = x.flatten(2).transpose(1, 2)
        for block in self.blocks:
            tokens, priors = block(tokens, priors)
        x = tokens.transpose(1, 2).reshape(b, c, *spatial)
        return x, priors[:, :1], priors[:, 1:]


class DynamicMaskHead(nn.Module):
    """Lesion logits from the task posteriors and one decoder level's features (Hermes's dynamic head).

    The task posterior tokens of all fusion layers are concatenated, normalised and mapped by two MLPs to
    a per-sample weight vector ``w`` with the decoder level's channel count; the lesion logit of a voxel
    is ``<w, feature(voxel)>``.
    """

    def __init__(self, token_dim: int, feature_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(token_dim)
        self.to_weights = nn.Sequential(FeedForward(token_dim, feature_dim, feature_dim),
                                        FeedForward(feature_dim, feature_dim, feature_dim))
        for m in self.to_weights.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, task_tokens: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """task_tokens (B, token_dim), features (B, C, X, Y, Z) -> lesion logits (B, 1, X, Y, Z)."""
        w = self.to_weights(self.norm(task_tokens))
        return torch.einsum("bc,bc...->b...", w, features).unsqueeze(1)


class ModalityClassifier(nn.Module):
    """The auxiliary head: modality logits from the modality posterior tokens of all fusion layers."""

    def __init__(self, token_dim: int, n_modalities: int):
        super().__init__()
        self.norm = nn.LayerNorm(token_dim)
        self.mlp = FeedForward(token_dim, token_dim, n_modalities)

    def forward(self, modality_tokens: torch.Tensor) -> torch.Tensor:
        """(B, L, token_dim) -> (B, n_modalities) logits."""
        return self.mlp(self.norm(modality_tokens).mean(dim=1))
