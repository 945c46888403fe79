"""SAM-Med3D: shapes, config checks, the released checkpoint layout and the importer."""

from __future__ import annotations

import pytest
import torch

from mome.errors import CheckpointError, ConfigError, ShapeError
from mome.model.baselines import SAMMed3D, SAMMed3DConfig, sam_med3d_config
from mome.model.baselines.sam_med3d import SAM_PRESETS
from mome.weights.sam_med3d import import_sam_med3d, infer_config, load_official, to_official_state_dict
from mome.weights.store import load_model


def _tiny(seed: int = 0) -> SAMMed3D:
    torch.manual_seed(seed)
    model = SAMMed3D(sam_med3d_config("tiny")).eval()
    with torch.no_grad():  # non-zero everywhere (zero-initialised tables would hide a misplaced tensor)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _prompts():
    points = torch.tensor([[[3, 5, 12], [10, 11, 2]], [[0, 15, 4], [7, 7, 7]]])
    labels = torch.tensor([[1, 0], [1, 1]])
    return points, labels


def test_shapes_of_the_tiny_preset():
    model = _tiny()
    cfg = model.config
    x = torch.randn(2, 1, 16, 16, 16)
    emb = model.embed(x)
    assert emb.shape == (2, cfg.prompt_dim, cfg.grid, cfg.grid, cfg.grid)
    points, labels = _prompts()
    low, iou = model.decode(emb, points, labels)
    assert low.shape == (2, 1, cfg.low_res, cfg.low_res, cfg.low_res) and iou.shape == (2, 1)
    low2, _ = model.decode(emb, points, labels, low)  # the previous logits as the mask prompt
    assert not torch.equal(low, low2)
    assert model(x, points, labels).shape == (2, 1, 16, 16, 16)
    assert model.decode(emb)[0].shape == low.shape  # prompt-free
    with pytest.raises(ShapeError):
        model.embed(torch.randn(1, 1, 16, 16, 8))


def test_every_parameter_takes_part_except_the_multimask_tokens():
    model = _tiny()
    points, labels = _prompts()
    low, iou = model.decode(model.embed(torch.randn(2, 1, 16, 16, 16)), points, labels,
                            torch.randn(2, 1, 16, 16, 16))
    (low.sum() + iou.sum()).backward()
    unused = {n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    # the heads of SAM's three extra mask tokens (multi-mask output) are never used by mome, and the
    # "no mask" embedding only when no mask prompt is given
    heads = {f"mask_decoder.output_hypernetworks_mlps.{i}.layers.{j}.{w}" for i in (1, 2, 3) for j in (0, 1, 2)
             for w in ("weight", "bias")}
    assert unused == heads | {"prompt_encoder.no_mask_embed.weight"}


@pytest.mark.parametrize("change, fragment", [
    ({"img_size": 100}, "multiple of patch_size"),
    ({"prompt_dim": 100}, "multiple of 3 and 8"),
    ({"global_attn_indexes": [12]}, "global_attn_indexes"),
    ({"depth": "2"}, "depth"),
    ({"embed_dim": 25}, "divisible"),
    ({"mlp_ratio": 0}, "mlp_ratio"),
    ({"mask_in_chans": 4}, "at least 8"),
])
def test_config_checks(change, fragment):
    with pytest.raises(ConfigError, match=fragment):
        SAMMed3DConfig(**change)


def test_crop_size_keeps_the_token_grid():
    cfg = sam_med3d_config("cpu", img_size=96)
    assert (cfg.img_size, cfg.patch_size, cfg.grid) == (96, 12, 8)
    with pytest.raises(ConfigError):
        sam_med3d_config("cpu", img_size=100)
    with pytest.raises(ConfigError):
        sam_med3d_config("huge")


def test_paper_preset_has_the_released_vit_b_ori_layout():
    """Names and shapes of SAM-Med3D's vit_b_ori state dict (read from its build_sam3D.py / modeling/*3D.py)."""
    with torch.device("meta"):
        model = SAMMed3D(SAM_PRESETS["paper"])
    state = {k: tuple(v.shape) for k, v in to_official_state_dict(model.state_dict()).items()}
    expected = {
        "image_encoder.patch_embed.proj.weight": (768, 1, 16, 16, 16),
        "image_encoder.pos_embed": (1, 8, 8, 8, 768),
        "image_encoder.blocks.0.attn.qkv.weight": (2304, 768),
        "image_encoder.blocks.0.attn.rel_pos_d": (27, 64),  # window 14
        "image_encoder.blocks.2.attn.rel_pos_w": (15, 64),  # global: the 8^3 grid
        "image_encoder.blocks.11.mlp.lin2.weight": (768, 3072),
        "image_encoder.neck.0.weight": (384, 768, 1, 1, 1),
        "image_encoder.neck.3.bias": (384,),
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": (3, 128),
        "prompt_encoder.point_embeddings.1.weight": (1, 384),
        "prompt_encoder.not_a_point_embed.weight": (1, 384),
        "prompt_encoder.mask_downscaling.6.weight": (384, 16, 1, 1, 1),
        "prompt_encoder.no_mask_embed.weight": (1, 384),
        "mask_decoder.transformer.layers.1.mlp.lin1.weight": (2048, 384),
        "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight": (192, 384),
        "mask_decoder.transformer.final_attn_token_to_image.out_proj.weight": (384, 192),
        "mask_decoder.transformer.norm_final_attn.weight": (384,),
        "mask_decoder.mask_tokens.weight": (4, 384),
        "mask_decoder.output_upscaling.3.weight": (96, 48, 2, 2, 2),
        "mask_decoder.output_hypernetworks_mlps.3.layers.2.weight": (48, 384),
        "mask_decoder.iou_prediction_head.layers.2.weight": (4, 256),
    }
    assert {k: state.get(k) for k in expected} == expected
    assert not any(".linear1." in k or ".linear2." in k for k in state)
    assert infer_config(to_official_state_dict(model.state_dict())) == SAM_PRESETS["paper"]


def _official_checkpoint(model, path, wrap=True, prefix=""):
    state = {prefix + k: v.clone() for k, v in to_official_state_dict(model.state_dict()).items()}
    torch.save({"epoch": 3, "model_state_dict": state} if wrap else state, str(path))
    return path


@pytest.mark.parametrize("wrap, prefix", [(True, ""), (False, "module.")])
def test_import_gives_the_same_network(tmp_path, wrap, prefix):
    model = _tiny(seed=1)
    ckpt = _official_checkpoint(model, tmp_path / "sam_med3d_turbo.pth", wrap, prefix)
    folder = import_sam_med3d(ckpt, tmp_path / "imported", decoder_heads=2)  # not in any shape (SAM-Med3D: 8)
    loaded = load_model(folder).eval()
    assert isinstance(loaded, SAMMed3D) and loaded.config == model.config
    x = torch.randn(2, 1, 16, 16, 16)
    points, labels = _prompts()
    with torch.no_grad():
        assert torch.equal(model(x, points, labels), loaded(x, points, labels))


def test_import_refuses_a_tensor_of_the_wrong_shape_and_an_extra_tensor(tmp_path):
    state = to_official_state_dict(_tiny().state_dict())
    bad = dict(state)
    bad["mask_decoder.iou_token.weight"] = torch.zeros(1, 7)
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_official(bad)
    extra = {**state, "image_encoder.extra.weight": torch.zeros(2)}
    with pytest.raises(CheckpointError, match="unexpected"):
        load_official(extra)
    missing = {k: v for k, v in state.items() if k != "prompt_encoder.no_mask_embed.weight"}
    with pytest.raises(CheckpointError, match="missing"):
        load_official(missing)
    nan = {**state, "mask_decoder.iou_token.weight": torch.full((1, 96), float("nan"))}
    with pytest.raises(CheckpointError, match="non-finite"):
        load_official(nan)
