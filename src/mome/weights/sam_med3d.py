"""Import a SAM-Med3D checkpoint (e.g. ``sam_med3d_turbo.pth``) into a mome model folder.

The layout is the released code's (uni-medical/SAM-Med3D, ``segment_anything/build_sam3D.py`` and
``modeling/*3D.py``): ``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``, saved either as the
state dict itself or under ``model_state_dict`` (its ``train.py``), with ``module.`` prefixes after DDP.
mome's network is the same function with MONAI's MLP blocks, whose layers are named ``linear1`` /
``linear2`` where SAM's are ``lin1`` / ``lin2``; nothing else is renamed.

The file is read with ``torch.load(weights_only=True)``: tensors and plain containers only, no code.
The architecture is read from the tensor shapes (width, depth, heads from the relative-position tables,
window size, crop size), except the mask decoder's head count, which no shape holds (SAM-Med3D: 8).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from mome.errors import CheckpointError

# SAM-Med3D's training spacing (its data preparation resamples every image to 1.5 mm)
SAM_MED3D_SPACING_MM = [1.5, 1.5, 1.5]
_MLP = r"^(image_encoder\.blocks\.\d+\.mlp\.|mask_decoder\.transformer\.layers\.\d+\.mlp\.)"
_RENAMES = [(re.compile(_MLP + r"lin([12])\."), r"\1linear\2.")]
_BACK = [(re.compile(_MLP + r"linear([12])\."), r"\1lin\2.")]


def _rename(state: dict, rules) -> dict:
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            key = pattern.sub(repl, key)
        out[key] = value
    return out


def from_official_state_dict(state: dict, config=None) -> dict:
    """SAM-Med3D key names -> mome's (``config`` is accepted for symmetry and unused)."""
    return _rename(state, _RENAMES)


def to_official_state_dict(state: dict) -> dict:
    """mome's key names -> SAM-Med3D's (to write a checkpoint the released code loads)."""
    return _rename(state, _BACK)


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of a SAM-Med3D ``.pth`` (raw, or under ``model_state_dict``), ``module.`` stripped."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"SAM-Med3D checkpoint {path} does not exist or is not a file")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a corrupt or unsafe file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint of plain tensors: {first}") from None
    if isinstance(obj, dict) and isinstance(obj.get("model_state_dict"), dict):
        obj = obj["model_state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors (expected SAM-Med3D's layout: image_encoder.*, "
                              "prompt_encoder.*, mask_decoder.*)")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def infer_config(state: dict[str, torch.Tensor], decoder_heads: int = 8):
    """The :class:`~mome.model.baselines.SAMMed3DConfig` whose tensors have the shapes of ``state``."""
    from mome.model.baselines.sam_med3d import SAMMed3DConfig

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise CheckpointError(f"not a SAM-Med3D checkpoint: no tensor {key!r}")
        return tuple(state[key].shape)

    def count(pattern: str) -> int:
        rx = re.compile(pattern)
        return len({m.group(1) for k in state for m in [rx.match(k)] if m})

    try:
        embed_dim, _, patch = shape("image_encoder.patch_embed.proj.weight")[:3]
        grid = shape("image_encoder.pos_embed")[1]
        depth = count(r"^image_encoder\.blocks\.(\d+)\.norm1\.weight$")
        spans = [(shape(f"image_encoder.blocks.{i}.attn.rel_pos_d")[0] + 1) // 2 for i in range(depth)]
        head_dim = shape("image_encoder.blocks.0.attn.rel_pos_d")[1]
        windows = sorted({s for s in spans if s != grid})
        if len(windows) > 1:
            raise CheckpointError(f"not a SAM-Med3D checkpoint: windowed blocks of different sizes {windows}")
        config = SAMMed3DConfig(
            img_size=grid * patch, patch_size=patch, embed_dim=embed_dim, depth=depth,
            num_heads=embed_dim // head_dim,
            mlp_ratio=shape("image_encoder.blocks.0.mlp.lin1.weight")[0] / embed_dim,
            window_size=windows[0] if windows else 0,
            global_attn_indexes=[i for i, s in enumerate(spans) if s == grid],
            prompt_dim=shape("image_encoder.neck.0.weight")[0],
            mask_in_chans=shape("prompt_encoder.mask_downscaling.3.weight")[0],
            decoder_depth=count(r"^mask_decoder\.transformer\.layers\.(\d+)\.norm1\.weight$"),
            decoder_heads=decoder_heads,
            decoder_mlp_dim=shape("mask_decoder.transformer.layers.0.mlp.lin1.weight")[0],
            iou_hidden_dim=shape("mask_decoder.iou_prediction_head.layers.0.weight")[0],
            num_multimask_outputs=shape("mask_decoder.mask_tokens.weight")[0] - 1)
    except (ValueError, IndexError, ZeroDivisionError) as exc:
        raise CheckpointError(f"not a SAM-Med3D checkpoint: inconsistent tensor shapes ({exc})") from None
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - a ConfigError from shapes no SAM-Med3D has
        raise CheckpointError(f"not a SAM-Med3D checkpoint: {exc}") from None
    return config


def load_official(state: dict[str, torch.Tensor], decoder_heads: int = 8):
    """A :class:`~mome.model.baselines.SAMMed3D` holding ``state`` (SAM-Med3D's names); every key must match."""
    from mome.model.baselines.sam_med3d import SAMMed3D

    config = infer_config(state, decoder_heads)
    model = SAMMed3D(config)
    ours = from_official_state_dict(state)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(ours))
    unexpected = sorted(set(ours) - set(expected))
    if missing or unexpected:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                names = ", ".join(to_official_state_dict(dict.fromkeys(keys[:3])))
                parts.append(f"{len(keys)} {what} (e.g. {names})")
        raise CheckpointError(f"not a SAM-Med3D checkpoint layout: {'; '.join(parts)} tensors")
    wrong = [k for k in expected if tuple(expected[k].shape) != tuple(ours[k].shape)]
    if wrong:
        k = wrong[0]
        raise CheckpointError(f"not a SAM-Med3D checkpoint layout: {len(wrong)} tensor(s) of the wrong shape, e.g. "
                              f"{next(iter(to_official_state_dict({k: 0})))} {tuple(ours[k].shape)} where the "
                              f"architecture read from the file needs {tuple(expected[k].shape)}")
    if any(not torch.isfinite(v).all() for v in ours.values() if v.is_floating_point()):
        raise CheckpointError("the SAM-Med3D checkpoint holds non-finite weights")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in ours.items()})
    return model


def import_sam_med3d(checkpoint: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False,
                     decoder_heads: int = 8) -> Path:
    """Convert a SAM-Med3D checkpoint into the model folder ``out`` (safetensors + config.json)."""
    from mome.utils.atomic import check_writable
    from mome.weights.store import save_model

    check_writable(out, overwrite, kind="folder")
    model = load_official(read_checkpoint(checkpoint), decoder_heads)
    size = model.config.img_size
    metadata = {"system": "sam-med3d", "interactive": True, "patch_size": [size] * 3,
                "spacing_mm": SAM_MED3D_SPACING_MM,
                "source": {"checkpoint": str(Path(checkpoint).resolve()), "format": "SAM-Med3D (uni-medical/SAM-Med3D)",
                           "note": "SAM-Med3D's own weights (pretrained on SA-Med3D-140K); not fine-tuned by mome"}}
    return save_model(model, out, overwrite=overwrite, metadata=metadata)
