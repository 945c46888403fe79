"""Inputs of the paper's analysis figures, computed from trained networks on test images.

- Fig. 2b: one bottleneck feature vector per image (spatial mean of the deepest encoder stage) of the
  MoME gate and of the single U-Net.
- Supplementary Fig. I: the gate-weighted expert output per input modality. For each image and expert i
  we take the mean over brain voxels of |g_i * e_i| (summed over both classes, full resolution), i.e. the
  magnitude each expert contributes to the fused logits of eq. 1, normalise it over experts to a share,
  and average the shares over the images of each input modality. (The paper does not define its plotted
  quantity precisely; this one is comparable across identity and softmax gates.)

Whole volumes are passed at once (zero-padded to the network divisor), deep supervision off.
"""

from __future__ import annotations

import numpy as np
import torch

from mome.data.collection import Case
from mome.data.intensity import zscore_in_brain
from mome.inference.geometry import pad_to_multiple


def _volume(case: Case, divisor) -> tuple[torch.Tensor, np.ndarray, tuple]:
    import nibabel as nib

    data = np.asarray(nib.load(str(case.image)).dataobj, dtype=np.float32)
    brain = data != 0
    x = torch.from_numpy(zscore_in_brain(data))[None, None]
    padded, crop = pad_to_multiple(x, divisor)
    return padded, brain, crop


@torch.inference_mode()
def bottleneck_features(model: torch.nn.Module, cases: list[Case]) -> np.ndarray:
    """[n_cases, channels] spatial means of the bottleneck (MoME: the gate's; U-Net: its encoder's)."""
    from mome.model.mome import MoME

    model = model.eval()
    cfg = model.config.expert if isinstance(model, MoME) else model.config
    feats = []
    for case in cases:
        x, _, _ = _volume(case, cfg.divisor())
        if isinstance(model, MoME):
            model.set_deep_supervision(False)
            deepest = model(x, return_bottleneck=True).bottleneck
        else:
            deepest = model.encoder(x)[-1]
        feats.append(deepest.float().mean(dim=(2, 3, 4))[0].numpy())
    return np.stack(feats)


@torch.inference_mode()
def expert_usage(model: torch.nn.Module, cases: list[Case], modalities: list[str]) -> np.ndarray:
    """[input modality, expert] mean share of |gate x expert logits| (rows: ``modalities``; NaN if absent)."""
    model = model.eval()
    model.set_deep_supervision(False)
    n = model.config.n_experts
    sums = np.zeros((len(modalities), n))
    counts = np.zeros(len(modalities))
    for case in cases:
        if case.modality not in modalities:
            continue
        x, brain, crop = _volume(case, model.config.expert.divisor())
        out = model(x, return_experts=True, return_gates=True)
        g = out.gates[0][0]  # (N, C, X, Y, Z)
        e = torch.stack([lv[0][0] for lv in out.expert_logits])  # (N, C, X, Y, Z)
        contrib = (g * e).abs().sum(dim=1)[(slice(None), *crop)]  # (N, x, y, z) on the image grid
        mask = torch.from_numpy(brain)
        per = contrib[:, mask].mean(dim=1).double().numpy()
        share = per / max(per.sum(), 1e-12)
        r = modalities.index(case.modality)
        sums[r] += share
        counts[r] += 1
    with np.errstate(invalid="ignore"):
        return sums / counts[:, None]
