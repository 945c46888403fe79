"""The expert network: nnU-Net's ``PlainConvUNet``, also exposing its first encoder stage's output."""

from __future__ import annotations

import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from torch import nn

from mome.errors import ShapeError
from mome.model.checkpointing import run_decoder, run_encoder
from mome.model.config import UNetConfig


class ExpertUNet(PlainConvUNet):
    """A ``PlainConvUNet`` built from a :class:`UNetConfig`.

    Subclassing (rather than wrapping) keeps the state-dict keys identical to nnU-Net's, so official
    nnU-Net/MoME checkpoints load by key. Deep supervision is on by default (training); switch it off
    with :meth:`set_deep_supervision` for inference (only the full-resolution output is computed).
    :meth:`set_gradient_checkpointing` trades one extra forward pass for much less training memory.
    """

    def __init__(self, config: UNetConfig, deep_supervision: bool = True):
        super().__init__(
            input_channels=config.input_channels,
            n_stages=config.n_stages,
            features_per_stage=list(config.features_per_stage),
            conv_op=nn.Conv3d,
            kernel_sizes=[list(k) for k in _triples(config.kernel_sizes)],
            strides=[list(s) for s in config.stride_triples()],
            n_conv_per_stage=list(config.n_conv_per_stage),
            num_classes=config.num_classes,
            n_conv_per_stage_decoder=list(config.n_conv_per_stage_decoder),
            conv_bias=config.conv_bias,
            norm_op=nn.InstanceNorm3d,
            norm_op_kwargs={"eps": config.norm_eps, "affine": True},
            nonlin=nn.LeakyReLU,
            nonlin_kwargs={"negative_slope": config.leaky_slope, "inplace": True},
            deep_supervision=deep_supervision,
        )
        self.config = config
        self.gradient_checkpointing = False
        self.apply(PlainConvUNet.initialize)

    @property
    def deep_supervision(self) -> bool:
        return bool(self.decoder.deep_supervision)

    def set_deep_supervision(self, enabled: bool) -> None:
        self.decoder.deep_supervision = bool(enabled)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute each encoder/decoder stage in the backward pass instead of storing its activations."""
        self.gradient_checkpointing = bool(enabled)

    def encode(self, x: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
        """Every encoder stage's output (a list ``x`` is concatenated on channels inside the first stage)."""
        return run_encoder(self.encoder, x, self.gradient_checkpointing)

    def decode(self, skips: list[torch.Tensor]):
        """The decoder's output (list per level with deep supervision, else one tensor)."""
        return run_decoder(self.decoder, skips, self.gradient_checkpointing)

    def forward_with_features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Return (logits per level, highest resolution first; first encoder stage's output)."""
        skips = self.encode(x)
        out = self.decode(skips)
        return (list(out) if isinstance(out, (list, tuple)) else [out]), skips[0]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        """Logits per deep-supervision level, highest resolution first (one entry when DS is off)."""
        check_input(x, self.config)
        return self.forward_with_features(x)[0]


def check_input(x: torch.Tensor, config: UNetConfig) -> None:
    """Raise :class:`ShapeError` unless ``x`` is (B, C, X, Y, Z) with the right C and divisible sizes."""
    div = config.divisor()
    expected = f"(batch, {config.input_channels}, X, Y, Z) with X, Y, Z multiples of {div}"
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"expected a torch.Tensor of shape {expected}, got {type(x).__name__}")
    if x.ndim != 5:
        raise ShapeError(f"expected a 5D tensor of shape {expected}, got {x.ndim}D shape {tuple(x.shape)}")
    if x.shape[1] != config.input_channels:
        raise ShapeError(f"expected {config.input_channels} channel(s), shape {expected}; got {tuple(x.shape)}")
    bad = [s for s, d in zip(x.shape[2:], div) if s % d]
    if bad:
        raise ShapeError(f"spatial size {tuple(x.shape[2:])} is not divisible by the network; expected {expected}"
                         " (pad the image, e.g. with mome.inference)")


def _triples(values) -> list[tuple[int, int, int]]:
    return [(v, v, v) if isinstance(v, int) else tuple(v) for v in values]
