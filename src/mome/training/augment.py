"""nnU-Net's 3D training augmentation, built from ``batchgeneratorsv2`` with nnU-Net v2's parameters.

Order and probabilities follow ``nnUNetTrainer.get_training_transforms`` (3D, isotropic patch):
spatial (rotation +-30 deg per axis p 0.2, scaling 0.7-1.4 p 0.2, no elastic deformation; also the
centre crop from the larger sampled patch to the training patch), Gaussian noise (p 0.1), Gaussian
blur (p 0.2), brightness (p 0.15), contrast (p 0.15), low-resolution simulation (p 0.25), inverted
gamma (p 0.1), gamma (p 0.3), mirroring on every axis, brain masking (image 0 where the label is -1,
since intensities are z-scored in the brain), label -1 -> 0, and deep-supervision label downsampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

ROTATION_RAD = (-30.0 / 360 * 2 * math.pi, 30.0 / 360 * 2 * math.pi)
SCALING = (0.7, 1.4)
# nnU-Net sizes the sampled patch for scaling down to 0.85 (not the 0.7 of the transform itself)
INITIAL_PATCH_MIN_SCALE = 0.85


def deep_supervision_scales(strides: Sequence[Sequence[int]]) -> list[list[float]]:
    """Label scale of every decoder output, highest resolution first (nnU-Net: 1 / cumprod(strides)[:-1])."""
    scales, acc = [], np.ones(3)
    for s in strides:
        acc = acc * np.asarray(s, dtype=np.float64)
        scales.append([float(v) for v in 1.0 / acc])
    return scales[:-1]


def initial_patch_size(patch_size: Sequence[int], augmentation: bool = True) -> list[int]:
    """Size of the patch cut from the volume so that rotated / scaled-down patches need no padding.

    Like nnU-Net's ``get_patch_size``: the bounding box of the patch rotated by the largest angle about
    each axis in turn, divided by the smallest scale factor. Without augmentation it is the patch itself.
    """
    size = np.asarray(patch_size, dtype=np.float64)
    if not augmentation:
        return [int(s) for s in size]
    angle = max(abs(a) for a in ROTATION_RAD)
    c, s = abs(math.cos(angle)), abs(math.sin(angle))
    out = size.copy()
    for axis in range(3):
        i, j = [k for k in range(3) if k != axis]
        out[i] = max(out[i], size[i] * c + size[j] * s)
        out[j] = max(out[j], size[i] * s + size[j] * c)
    return [int(v) for v in np.ceil(out / INITIAL_PATCH_MIN_SCALE)]


def training_transforms(patch_size: Sequence[int], ds_scales: Sequence[Sequence[float]] | None,
                        augmentation: bool = True, intensity_shift: float = 0.0):
    """The transform applied to one sample ``{"image": (1, X, Y, Z), "segmentation": (1, X, Y, Z)}``.

    Args:
        patch_size: final patch (voxels).
        ds_scales: deep-supervision label scales (None: only the full-resolution label).
        augmentation: nnU-Net's pipeline; False only masks, maps -1 to 0 and downsamples the label
            (nnU-Net's validation transforms; the sampled patch then already has the final size).
        intensity_shift: with augmentation, half the patches get an additive shift ~ N(0, this) of their
            z-scored intensities (before masking, so the background stays 0); 0 = none.
    """
    from batchgeneratorsv2.transforms.intensity.brightness import (BrightnessAdditiveTransform,
                                                                   MultiplicativeBrightnessTransform)
    from batchgeneratorsv2.transforms.intensity.contrast import BGContrast, ContrastTransform
    from batchgeneratorsv2.transforms.intensity.gamma import GammaTransform
    from batchgeneratorsv2.transforms.intensity.gaussian_noise import GaussianNoiseTransform
    from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform
    from batchgeneratorsv2.transforms.spatial.low_resolution import SimulateLowResolutionTransform
    from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
    from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
    from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
    from batchgeneratorsv2.transforms.utils.nnunet_masking import MaskImageTransform
    from batchgeneratorsv2.transforms.utils.random import RandomTransform
    from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTansform

    transforms = []
    if augmentation:
        transforms += [
            SpatialTransform(tuple(int(p) for p in patch_size), patch_center_dist_from_border=0, random_crop=False,
                             p_elastic_deform=0, p_rotation=0.2, rotation=ROTATION_RAD, p_scaling=0.2,
                             scaling=SCALING, p_synchronize_scaling_across_axes=1, bg_style_seg_sampling=False),
            RandomTransform(GaussianNoiseTransform(noise_variance=(0, 0.1), p_per_channel=1,
                                                   synchronize_channels=True), apply_probability=0.1),
            # benchmark=False: nnU-Net times FFT vs direct convolution and keeps the faster, which makes
            # results depend on machine load; a fixed choice keeps seeded runs reproducible
            RandomTransform(GaussianBlurTransform(blur_sigma=(0.5, 1.0), synchronize_channels=False,
                                                  synchronize_axes=False, p_per_channel=0.5, benchmark=False),
                            apply_probability=0.2),
            RandomTransform(MultiplicativeBrightnessTransform(multiplier_range=BGContrast((0.75, 1.25)),
                                                              synchronize_channels=False, p_per_channel=1),
                            apply_probability=0.15),
            RandomTransform(ContrastTransform(contrast_range=BGContrast((0.75, 1.25)), preserve_range=True,
                                              synchronize_channels=False, p_per_channel=1), apply_probability=0.15),
            RandomTransform(SimulateLowResolutionTransform(scale=(0.5, 1), synchronize_channels=False,
                                                           synchronize_axes=True, ignore_axes=None,
                                                           allowed_channels=None, p_per_channel=0.5),
                            apply_probability=0.25),
            RandomTransform(GammaTransform(gamma=BGContrast((0.7, 1.5)), p_invert_image=1, synchronize_channels=False,
                                           p_per_channel=1, p_retain_stats=1), apply_probability=0.1),
            RandomTransform(GammaTransform(gamma=BGContrast((0.7, 1.5)), p_invert_image=0, synchronize_channels=False,
                                           p_per_channel=1, p_retain_stats=1), apply_probability=0.3),
            MirrorTransform(allowed_axes=(0, 1, 2)),
        ]
        if intensity_shift > 0:
            # synchronize_channels=False: its synchronised branch draws uniform(mu, sigma), not N(mu, sigma)
            transforms.append(RandomTransform(BrightnessAdditiveTransform(0.0, float(intensity_shift),
                                                                          synchronize_channels=False),
                                              apply_probability=0.5))
    transforms += [
        MaskImageTransform(apply_to_channels=[0], channel_idx_in_seg=0, set_outside_to=0),
        RemoveLabelTansform(-1, 0),
    ]
    if ds_scales is not None:
        transforms.append(DownsampleSegForDSTransform(ds_scales=[list(s) for s in ds_scales]))
    return ComposeTransforms(transforms)
