"""SAM-Med3D (Wang et al. 2023, github uni-medical/SAM-Med3D), the paper's promptable comparator.

A 3D ViT image encoder (:mod:`mome.model.baselines.sam_blocks`), a prompt encoder (random-Fourier
positional encoding of point clicks plus learned positive / negative / padding embeddings, and a
convolutional embedding of the previous low-resolution mask logits) and a mask decoder (MONAI's
``TwoWayTransformer`` and ``MLP`` from VISTA-3D, which are SAM's; mask tokens + IoU token, transposed-
convolution upsampling, hypernetwork heads). Presets: ``paper`` is SAM-Med3D's ``vit_b_ori`` (128^3 input,
16^3 patches, 768-wide ViT of 12 blocks with global attention in blocks 2, 5, 8, 11, window 14, a
384-channel neck); ``cpu`` and ``tiny`` keep its 8^3 token grid and its structure at a smaller width.

The network is interactive: :meth:`SAMMed3D.decode` takes point clicks (voxel coordinates in the input
crop, array index order, label 1 = lesion, 0 = background) and the previous low-resolution logits, and
returns new low-resolution logits (``img_size * 4 / patch_size`` per side: 32^3 for ``paper``). How the
clicks are simulated is :mod:`mome.inference.clicks`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from monai.networks.nets.vista3d import MLP, TwoWayTransformer
from torch import nn

from mome.errors import ConfigError, ShapeError
from mome.model.baselines.sam_blocks import ImageEncoder3D, LayerNorm3d, PositionEmbeddingRandom3D


@dataclass
class SAMMed3DConfig:
    """A SAM-Med3D network.

    Attributes:
        img_size: side of the cubic input crop in voxels.
        patch_size: side of the ViT's patches (``img_size`` must be a multiple of it).
        embed_dim, depth, num_heads, mlp_ratio: the ViT.
        window_size: window side (in tokens) of the non-global blocks.
        global_attn_indexes: blocks that attend over the whole token grid.
        prompt_dim: width of the neck, the prompt embeddings and the mask decoder (a multiple of 3 and 8).
        mask_in_chans: hidden channels of the mask-prompt embedding.
        decoder_depth, decoder_heads, decoder_mlp_dim: the two-way transformer.
        iou_hidden_dim: the IoU head's hidden width.
        num_multimask_outputs: extra mask tokens (SAM: 3); mome trains and uses the single-mask token.
    """

    img_size: int = 128
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    window_size: int = 14
    global_attn_indexes: list[int] = field(default_factory=lambda: [2, 5, 8, 11])
    prompt_dim: int = 384
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    iou_hidden_dim: int = 256
    num_multimask_outputs: int = 3

    def __post_init__(self) -> None:
        ints = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.type == "int"}
        for name, value in ints.items():
            lo = 0 if name in ("window_size", "num_multimask_outputs") else 1
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= 4096:
                raise ConfigError(f"SAMMed3DConfig.{name} must be an integer from {lo} to 4096, got {value!r}")
        if self.img_size % self.patch_size:
            raise ConfigError(f"SAMMed3DConfig: img_size {self.img_size} is not a multiple of patch_size "
                              f"{self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"SAMMed3DConfig: embed_dim {self.embed_dim} is not divisible by {self.num_heads} heads")
        if self.prompt_dim % 3 or self.prompt_dim % 8 or (self.prompt_dim // 2) % self.decoder_heads:
            raise ConfigError(f"SAMMed3DConfig: prompt_dim {self.prompt_dim} must be a multiple of 3 and 8, and "
                              f"half of it divisible by decoder_heads {self.decoder_heads}")
        if self.mask_in_chans % 4 or self.mask_in_chans < 8:
            # its first LayerNorm has mask_in_chans / 4 channels: over one channel it outputs its bias only,
            # and the mask prompt would carry nothing
            raise ConfigError(f"SAMMed3DConfig: mask_in_chans {self.mask_in_chans} must be a multiple of 4, at least 8")
        self.global_attn_indexes = [int(i) for i in self.global_attn_indexes]
        if any(not 0 <= i < self.depth for i in self.global_attn_indexes):
            raise ConfigError(f"SAMMed3DConfig: global_attn_indexes {self.global_attn_indexes} outside "
                              f"0..{self.depth - 1}")
        if not 0 < float(self.mlp_ratio) <= 16:
            raise ConfigError(f"SAMMed3DConfig.mlp_ratio must be in (0, 16], got {self.mlp_ratio!r}")

    @property
    def grid(self) -> int:
        """Tokens per side."""
        return self.img_size // self.patch_size

    @property
    def low_res(self) -> int:
        """Side of the low-resolution mask logits (the decoder upsamples the token grid 4x)."""
        return 4 * self.grid

    def replace(self, **changes) -> "SAMMed3DConfig":
        return dataclasses.replace(self, **changes)


SAM_PRESETS = {
    # SAM-Med3D's vit_b_ori (segment_anything/build_sam3D.py)
    "paper": SAMMed3DConfig(),
    # the same 8^3 token grid over 64^3 crops (128 mm at the cpu preset's 2 mm), a 4-block 192-wide ViT
    "cpu": SAMMed3DConfig(img_size=64, patch_size=8, embed_dim=192, depth=4, num_heads=6, window_size=4,
                          global_attn_indexes=[1, 3], prompt_dim=96, mask_in_chans=8, decoder_heads=4,
                          decoder_mlp_dim=384, iou_hidden_dim=64),
    # tests: a 24-wide ViT, but a 96-wide prompt path: clicks are encoded by prompt_dim / 3 random Fourier
    # features, and with 8 (prompt_dim 24) a trained tiny model could not place a click within a lesion
    # (Dice fell from click 2 on; with 32 it rose over 10 clicks: tests/training/test_interactive.py)
    "tiny": SAMMed3DConfig(img_size=16, patch_size=4, embed_dim=24, depth=2, num_heads=2, window_size=2,
                           global_attn_indexes=[1], prompt_dim=96, mask_in_chans=8, decoder_depth=1,
                           decoder_heads=2, decoder_mlp_dim=64, iou_hidden_dim=16),
}


def sam_med3d_config(preset: str, img_size: int | None = None) -> SAMMed3DConfig:
    """The preset's SAM-Med3D; ``img_size`` changes the crop (and the patch so the token grid is kept)."""
    if preset not in SAM_PRESETS:
        raise ConfigError(f"no SAM-Med3D preset {preset!r}; choose one of {', '.join(SAM_PRESETS)}")
    cfg = SAM_PRESETS[preset]
    if img_size is not None and img_size != cfg.img_size:
        if img_size % cfg.grid:
            raise ConfigError(f"SAM-Med3D crop {img_size} is not a multiple of the {preset} preset's "
                              f"{cfg.grid} tokens per side")
        cfg = cfg.replace(img_size=img_size, patch_size=img_size // cfg.grid)
    return cfg


class PromptEncoder3D(nn.Module):
    """Embeds point clicks (sparse) and the previous low-resolution mask logits (dense)."""

    def __init__(self, cfg: SAMMed3DConfig):
        super().__init__()
        dim = cfg.prompt_dim
        self.embed_dim = dim
        self.grid = (cfg.grid,) * 3
        self.input_size = (cfg.img_size,) * 3
        self.pe_layer = PositionEmbeddingRandom3D(dim // 3)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, dim) for _ in range(2))  # negative, positive
        self.not_a_point_embed = nn.Embedding(1, dim)
        c = cfg.mask_in_chans
        self.mask_downscaling = nn.Sequential(nn.Conv3d(1, c // 4, kernel_size=2, stride=2), LayerNorm3d(c // 4),
                                              nn.GELU(), nn.Conv3d(c // 4, c, kernel_size=2, stride=2),
                                              LayerNorm3d(c), nn.GELU(), nn.Conv3d(c, dim, kernel_size=1))
        self.no_mask_embed = nn.Embedding(1, dim)

    def dense_pe(self) -> torch.Tensor:
        """(1, dim, g, g, g) positional encoding of the token grid."""
        return self.pe_layer(self.grid).unsqueeze(0)

    def forward(self, points: torch.Tensor | None, labels: torch.Tensor | None, mask_logits: torch.Tensor | None,
                batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse (B, N + 1, dim) and dense (B, dim, g, g, g) prompt embeddings.

        ``points`` (B, N, 3) voxel coordinates and ``labels`` (B, N) in {0, 1} (-1 = padding); one padding
        point is appended as SAM does without a box. ``mask_logits`` (B, 1, low_res^3) or None.
        """
        weight = self.not_a_point_embed.weight
        sparse = torch.empty((batch, 0, self.embed_dim), device=weight.device, dtype=weight.dtype)
        if points is not None:
            pts = torch.cat([points.float() + 0.5, torch.zeros((batch, 1, 3), device=points.device)], dim=1)
            lab = torch.cat([labels, -torch.ones((batch, 1), device=labels.device, dtype=labels.dtype)], dim=1)
            emb = self.pe_layer.forward_with_coords(pts, self.input_size)
            lab = lab[..., None]
            emb = torch.where(lab == -1, self.not_a_point_embed.weight, emb)
            emb = emb + torch.where(lab == 0, self.point_embeddings[0].weight, 0.0)
            emb = emb + torch.where(lab == 1, self.point_embeddings[1].weight, 0.0)
            sparse = torch.cat([sparse, emb], dim=1)
        if mask_logits is not None:
            dense = self.mask_downscaling(mask_logits)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1, 1).expand(batch, -1, *self.grid)
        return sparse, dense


class MaskDecoder3D(nn.Module):
    """Two-way transformer over prompt tokens and image tokens, then upsampled masks and IoU scores."""

    def __init__(self, cfg: SAMMed3DConfig):
        super().__init__()
        dim = cfg.prompt_dim
        self.transformer = TwoWayTransformer(depth=cfg.decoder_depth, embedding_dim=dim, num_heads=cfg.decoder_heads,
                                             mlp_dim=cfg.decoder_mlp_dim)
        self.num_mask_tokens = cfg.num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.output_upscaling = nn.Sequential(nn.ConvTranspose3d(dim, dim // 4, kernel_size=2, stride=2),
                                              LayerNorm3d(dim // 4), nn.GELU(),
                                              nn.ConvTranspose3d(dim // 4, dim // 8, kernel_size=2, stride=2),
                                              nn.GELU())
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(dim, cfg.iou_hidden_dim, self.num_mask_tokens, 3)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, low_res^3) logits of the single-mask token and (B, 1) its predicted IoU."""
        tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([tokens.unsqueeze(0).expand(sparse.shape[0], -1, -1), sparse], dim=1)
        src = image_embeddings + dense
        pos = image_pe.expand(src.shape[0], -1, -1, -1, -1)
        b, c, x, y, z = src.shape
        hs, src = self.transformer(src, pos, tokens)
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, x, y, z))
        hyper = torch.stack([mlp(hs[:, 1 + i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        b, c, x, y, z = upscaled.shape
        masks = (hyper @ upscaled.view(b, c, x * y * z)).view(b, -1, x, y, z)
        iou = self.iou_prediction_head(hs[:, 0, :])
        return masks[:, :1], iou[:, :1]


class SAMMed3D(nn.Module):
    """The promptable network: :meth:`embed` once per crop, :meth:`decode` once per click."""

    def __init__(self, config: SAMMed3DConfig):
        super().__init__()
        self.config = config
        c = config
        self.image_encoder = ImageEncoder3D(c.img_size, c.patch_size, c.embed_dim, c.depth, c.num_heads, c.mlp_ratio,
                                            c.prompt_dim, c.window_size, c.global_attn_indexes)
        self.prompt_encoder = PromptEncoder3D(c)
        self.mask_decoder = MaskDecoder3D(c)

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S, S) crop -> (B, prompt_dim, g, g, g) image embedding."""
        size = self.config.img_size
        if image.ndim != 5 or image.shape[1] != 1 or tuple(image.shape[2:]) != (size,) * 3:
            raise ShapeError(f"SAM-Med3D takes (B, 1, {size}, {size}, {size}) crops, got {tuple(image.shape)}")
        return self.image_encoder(image)

    def decode(self, embedding: torch.Tensor, points: torch.Tensor | None = None, labels: torch.Tensor | None = None,
               mask_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-resolution logits (B, 1, r, r, r) and predicted IoU (B, 1) for the prompts (see module doc)."""
        sparse, dense = self.prompt_encoder(points, labels, mask_logits, embedding.shape[0])
        return self.mask_decoder(embedding, self.prompt_encoder.dense_pe(), sparse, dense)

    def forward(self, image: torch.Tensor, points: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                mask_logits: torch.Tensor | None = None) -> torch.Tensor:
        """Full-resolution logits (B, 1, S, S, S) for one round of prompts."""
        low, _ = self.decode(self.embed(image), points, labels, mask_logits)
        return upsample(low, self.config.img_size)


def upsample(low_res: torch.Tensor, size: int) -> torch.Tensor:
    """Low-resolution logits to the crop's resolution (trilinear, as SAM-Med3D)."""
    return nn.functional.interpolate(low_res, size=(size,) * 3, mode="trilinear", align_corners=False)
