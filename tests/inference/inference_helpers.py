"""Helpers for inference tests: controlled networks and small NIfTI images (imported by the tests)."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import torch
from cli_runner import run_cli as mome_cli  # noqa: F401  (re-exported for the inference tests)
from torch import nn

import mome

SHAPE = (20, 23, 17)  # odd, not a multiple of the tiny network's divisor (4)
LESION_BOX = (slice(6, 12), slice(8, 15), slice(5, 10))  # 6 x 7 x 5 = 210 voxels
LESION_VOXELS = 6 * 7 * 5


def oblique_affine(spacing=(0.9, 1.3, 2.0), translation=(-31.5, 17.25, -8.0)) -> np.ndarray:
    """Rotation about two axes (no shear) times anisotropic spacing, plus a translation (mm)."""
    a, b = math.radians(17.0), math.radians(-11.0)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    aff = np.eye(4)
    aff[:3, :3] = rz @ rx @ np.diag(spacing)
    aff[:3, 3] = translation
    return aff


def sagittal_affine(spacing=(1.2, 0.9, 1.1)) -> np.ndarray:
    """Voxel axes (A, S, L): a 3-cycle of the RAS axes plus a flip, so reorienting is not self-inverse."""
    aff = np.zeros((4, 4))
    aff[1, 0], aff[2, 1], aff[0, 2] = spacing[0], spacing[1], -spacing[2]
    aff[:3, 3] = [12.0, -30.0, 5.0]
    aff[3, 3] = 1.0
    return oblique_affine(spacing=(1, 1, 1), translation=(0, 0, 0)) @ aff


def brain_image(shape=SHAPE, seed=0, lesion=True) -> np.ndarray:
    """A 'skull-stripped' volume: zero border, noisy brain ~100, a bright lesion box ~300."""
    rng = np.random.default_rng(seed)
    img = np.zeros(shape, np.float32)
    img[2:-2, 2:-2, 2:-2] = 100 + 5 * rng.standard_normal(tuple(s - 4 for s in shape))
    if lesion:
        img[LESION_BOX] = 300 + 5 * rng.standard_normal((6, 7, 5))
    return img


def save_nii(path, data, affine=None, *, qform_code=1, sform_code=1):
    img = nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine)
    img.set_qform(img.affine, code=qform_code)
    img.set_sform(img.affine, code=sform_code)
    nib.save(img, str(path))
    return path


class ThresholdNet(nn.Module):
    """A network whose output we control: lesion logit = 4 * (z-scored intensity - threshold), pointwise.

    With :func:`brain_image` and threshold 1, the lesion box (z ~ +4) is lesion and the brain (z ~ -0.2)
    is not.
    """

    def __init__(self, threshold: float = 1.0):
        super().__init__()
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.cat([torch.zeros_like(x), 4.0 * (x - self.threshold)], dim=1)]


def constant_gate_mome(gate_bias: list[float], activation: str, seed: int = 0):
    """A tiny MoME whose gate outputs the constant ``gate_bias[i]`` for expert i (both classes)."""
    torch.manual_seed(seed)
    model = mome.create_model("tiny", gate_activation=activation)
    seg = model.gate.net.decoder.seg_layers[-1]
    with torch.no_grad():
        seg.weight.zero_()
        seg.bias.copy_(torch.tensor([b for b in gate_bias for _ in range(2)], dtype=torch.float32))
    return model
