"""Official MoME weights: import from the nnU-Net v2.2 layout (parity with the released forward), download errors."""

from __future__ import annotations

import json
import time

import pytest
import torch
from cli_runner import run_cli

from mome.errors import CheckpointError, MomeError, OutputExistsError
from mome.model import get_preset_config
from mome.model.mome import MoME
from mome.weights.nnunet_checkpoint import load_nnunet_checkpoint, plans_architecture
from mome.weights.official import RELEASED_MODALITIES, download_official, import_official
from mome.weights.store import load_model

from nnunet_fixtures import (
    N_CLASSES,
    SMALL,
    nnunet_checkpoint,
    nnunet_plans,
    plain_conv_unet,
    reference_mome,
    save_checkpoint,
    write_official_mome,
)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """A downloaded-looking tree: ROOT/MoME_CHECKPOINT/checkpoint_best*.pth, and the networks that wrote it."""
    root = tmp_path_factory.mktemp("hf")
    experts, gate = write_official_mome(root / "MoME_CHECKPOINT")
    return root, experts, gate


@pytest.fixture(scope="module")
def imported(official, tmp_path_factory):
    root, _, _ = official
    return import_official(root, tmp_path_factory.mktemp("models") / "official")  # the parent folder is accepted


def test_imported_mome_matches_the_released_forward_at_every_level(official, imported):
    _, experts, gate = official
    model = load_model(imported).eval()
    assert isinstance(model, MoME) and model.deep_supervision
    torch.manual_seed(1)
    x = torch.randn(2, 1, 16, 12, 8)
    with torch.no_grad():
        ours = model(x).logits
        ref = reference_mome(experts, gate, x)
    assert len(ours) == len(ref) == 2
    shapes = [(2, N_CLASSES, 16, 12, 8), (2, N_CLASSES, 8, 6, 8)]  # level 1: stride (2, 2, 1)
    for level, (a, b) in enumerate(zip(ours, ref)):
        assert a.shape == b.shape == shapes[level]
        assert b.abs().max() > 0.1  # not a degenerate comparison
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=f"level {level}")


def test_imported_config_and_metadata(imported):
    record = json.loads((imported / "config.json").read_text())
    cfg = record["config"]
    assert cfg["modalities"] == ["T1", "T1ce", "T2", "FLAIR", "DWI"] == list(RELEASED_MODALITIES)
    assert cfg["gate_activation"] == "identity" and cfg["gate_type"] == "hierarchical"
    expert = cfg["expert"]
    assert expert["features_per_stage"] == [4, 8, 12]  # min(4 * 2**i, 12)
    assert expert["strides"] == SMALL["strides"] and expert["kernel_sizes"] == SMALL["kernels"]
    assert expert["n_conv_per_stage"] == [2, 1, 2] and expert["n_conv_per_stage_decoder"] == [1, 2]
    assert record["licence"] == "Apache-2.0" and "huggingface.co/ZhangxinruBIT/MoME" in record["source"]
    assert record["gate_activation"] == "identity" and record["modalities"] == cfg["modalities"]
    # plans are in SimpleITK array order (k, j, i); the folder records file voxel order (i, j, k)
    assert record["patch_size"] == [8, 12, 16] and record["spacing_mm"] == [0.8, 0.9, 1.0]
    assert record["nnunet"]["patch_size_network_axes"] == [16, 12, 8]
    assert record["nnunet"]["configuration"] == "3d_fullres" and record["nnunet"]["trainer_name"] == "nnUNetTrainer"
    assert record["expert_files"] == {"T1": "checkpoint_best1.pth", "T1ce": "checkpoint_best2.pth",
                                      "T2": "checkpoint_best3.pth", "FLAIR": "checkpoint_best4.pth",
                                      "DWI": "checkpoint_best5.pth"}
    assert len(record["imported_from"]["sha256"]) == 6


def test_official_layout_is_what_nnunet_writes(official):
    root, _, _ = official
    gate = load_nnunet_checkpoint(root / "MoME_CHECKPOINT" / "checkpoint_best.pth")
    assert set(gate) == {"network_weights", "optimizer_state", "grad_scaler_state", "logging", "_best_ema",
                         "current_epoch", "init_args", "trainer_name", "inference_allowed_mirroring_axes"}
    assert next(iter(gate["network_weights"])).startswith("_orig_mod.encoder.")
    assert gate["network_weights"]["_orig_mod.encoder.stages.0.0.convs.0.conv.weight"].shape[1] == 1 + 5 * 4
    assert gate["init_args"]["device"] == torch.device("cuda")
    expert = load_nnunet_checkpoint(root / "MoME_CHECKPOINT" / "checkpoint_best2.pth")
    assert "optimizer_state" not in expert and next(iter(expert["network_weights"])).startswith("module.")


def test_import_refuses_existing_output_then_overwrites(official, imported):
    root, _, _ = official
    before = (imported / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(OutputExistsError, match="--overwrite"):
        import_official(root / "MoME_CHECKPOINT", imported)
    assert (imported / "model.safetensors").stat().st_mtime_ns == before
    import_official(root / "MoME_CHECKPOINT", imported, overwrite=True)
    assert load_model(imported).config.modalities == list(RELEASED_MODALITIES)


def test_gate_that_does_not_fit_the_experts_is_refused(tmp_path):
    write_official_mome(tmp_path / "ck", gate_experts=4)
    with pytest.raises(CheckpointError, match=r"gate takes 17 channels and gives 8.*needs 21 -> 10"):
        import_official(tmp_path / "ck", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_experts_with_different_architectures_are_refused(tmp_path):
    write_official_mome(tmp_path / "ck")
    other = {**SMALL, "cap": 16}
    net = plain_conv_unet(1, N_CLASSES, seed=9, **other)
    ckpt = nnunet_checkpoint(net, nnunet_plans(**other), "3d_fullres")
    save_checkpoint(ckpt, tmp_path / "ck" / "checkpoint_best3.pth")
    with pytest.raises(CheckpointError, match="checkpoint_best3.pth: architecture differs"):
        import_official(tmp_path / "ck", tmp_path / "out")


def test_missing_expert_or_folder_is_a_clear_error(tmp_path):
    write_official_mome(tmp_path / "ck")
    (tmp_path / "ck" / "checkpoint_best4.pth").unlink()
    with pytest.raises(CheckpointError, match="lacks expert checkpoint.*checkpoint_best4.pth"):
        import_official(tmp_path / "ck", tmp_path / "out")
    with pytest.raises(CheckpointError, match="no official mome checkpoints"):
        import_official(tmp_path, tmp_path / "out2")


def test_pretrained_experts_import_as_five_unet_folders(tmp_path):
    """Stage-1 experts in the released trainer's folder names, with an inherited plans configuration."""
    src = tmp_path / "Pretrained_Experts"
    nets = {}
    for i, (modality, fold) in enumerate(zip(RELEASED_MODALITIES, ["T1", "T1ce", "T2", "FLAIR", "DWI"])):
        net = plain_conv_unet(1, N_CLASSES, seed=20 + i, **SMALL)
        ckpt = nnunet_checkpoint(net, nnunet_plans(**SMALL, configuration="3d_fullres_small"), "3d_fullres_small")
        save_checkpoint(ckpt, src / f"fold_{fold}mod" / "checkpoint_best.pth")
        save_checkpoint(ckpt, src / f"fold_{fold}mod" / "checkpoint_final.pth")
        nets[modality] = net
    out = import_official(tmp_path, tmp_path / "experts", which="experts")
    index = json.loads((out / "experts.json").read_text())
    assert index["modalities"] == list(RELEASED_MODALITIES) and index["licence"] == "Apache-2.0"
    x = torch.randn(1, 1, 8, 8, 4)
    for modality, net in nets.items():
        model = load_model(out / modality).eval()
        assert model.config.features_per_stage == [4, 8, 12]  # inherited 3d_fullres is paper-size: not used
        assert json.loads((out / modality / "config.json").read_text())["modality"] == modality
        with torch.no_grad():
            torch.testing.assert_close(model(x)[0], net(x)[0], rtol=0, atol=1e-5)


def test_paper_plans_give_the_paper_expert():
    """Shape-only: the released plans (3d_fullres, 32..320, 6 stages) map to the ``paper`` preset's expert."""
    paper = dict(base=32, cap=320, kernels=[[3, 3, 3]] * 6, strides=[[1, 1, 1]] + [[2, 2, 2]] * 5,
                 n_enc=[2] * 6, n_dec=[2] * 5, patch=[128, 128, 128], spacing=[1.0, 1.0, 1.0])
    weights = {"encoder.stages.0.0.convs.0.conv.weight": torch.empty(32, 1, 3, 3, 3),
               "decoder.seg_layers.4.weight": torch.empty(2, 32, 1, 1, 1)}
    ckpt = {"network_weights": weights, "init_args": {"plans": nnunet_plans(**paper), "configuration": "3d_fullres"}}
    arch = plans_architecture(ckpt)
    ours = get_preset_config("paper").expert
    assert arch.unet.features_per_stage == ours.features_per_stage == [32, 64, 128, 256, 320, 320]
    assert [tuple(s) for s in arch.unet.strides] == ours.stride_triples()
    assert arch.unet.n_conv_per_stage == ours.n_conv_per_stage
    assert arch.unet.n_conv_per_stage_decoder == ours.n_conv_per_stage_decoder
    assert arch.unet.num_classes == 2 and arch.patch_size == [128, 128, 128]


def test_download_fails_cleanly_when_the_hub_is_unreachable(tmp_path):
    start = time.monotonic()
    with pytest.raises(MomeError, match=r"could not download MoME_CHECKPOINT/.*import-official"):
        download_official(tmp_path / "dl", endpoint="http://127.0.0.1:9", timeout_s=2)
    assert time.monotonic() - start < 30
    assert not list((tmp_path / "dl").glob("MoME_CHECKPOINT/*.pth"))


def test_cli_import_and_offline_download(official, tmp_path, monkeypatch, capsys):
    root, _, _ = official
    code, out, err = run_cli(monkeypatch, capsys, "weights", "import-official", root / "MoME_CHECKPOINT",
                          "--out", tmp_path / "m")
    assert code == 0, err
    assert "wrote" in out and (tmp_path / "m" / "model.safetensors").is_file()
    code, out, err = run_cli(monkeypatch, capsys, "weights", "import-official", root, "--out", tmp_path / "m")
    assert code == 1 and "already exists" in err and len(err.strip().splitlines()) == 1
    code, out, err = run_cli(monkeypatch, capsys, "weights", "download", "--dest", tmp_path / "dl",
                          "--endpoint", "http://127.0.0.1:9")
    assert code == 1 and err.startswith("mome: error: could not download") and len(err.strip().splitlines()) == 1


def test_checkpoint_folders_are_found_next_to_each_other_and_nested(tmp_path):
    """The parent of Pretrained_Experts/ (which also holds MoME_CHECKPOINT/*.pth) and the hub's restructured
    layout (MoME_foundation/MoME_CHECKPOINT/) are both accepted."""
    from mome.weights.official import find_official_folder

    write_official_mome(tmp_path / "MoME_foundation" / "MoME_CHECKPOINT")
    net = plain_conv_unet(1, N_CLASSES, seed=1, **SMALL)
    for i in range(1, 6):
        save_checkpoint(nnunet_checkpoint(net, nnunet_plans(**SMALL), "3d_fullres"),
                        tmp_path / "MoME_foundation" / "Pretrained_Experts" / f"checkpoint_best{i}.pth")
    assert find_official_folder(tmp_path) == tmp_path / "MoME_foundation" / "MoME_CHECKPOINT"
    assert find_official_folder(tmp_path / "MoME_foundation", "experts") == \
        tmp_path / "MoME_foundation" / "Pretrained_Experts"
    out = import_official(tmp_path / "MoME_foundation", tmp_path / "experts", which="experts")
    assert (out / "FLAIR" / "model.safetensors").is_file()
    with pytest.raises(CheckpointError, match="MoME_CHECKPOINT/ folder up to two levels"):
        find_official_folder(tmp_path / "experts")


def test_official_import_with_the_authors_plans_file(official, tmp_path):
    root, _, _ = official
    ckpt = load_nnunet_checkpoint(root / "MoME_CHECKPOINT" / "checkpoint_best.pth")
    plans = tmp_path / "plans.json"
    plans.write_text(json.dumps(ckpt["init_args"]["plans"]))
    out = import_official(root, tmp_path / "m", plans=plans)
    assert json.loads((out / "config.json").read_text())["nnunet"]["plans"] == ckpt["init_args"]["plans"]
    bad = json.loads(plans.read_text())
    bad["configurations"]["3d_fullres"]["use_mask_for_norm"] = [True]
    plans.write_text(json.dumps(bad))
    with pytest.raises(CheckpointError, match="use_mask_for_norm"):
        import_official(root, tmp_path / "m2", plans=plans)
    assert not (tmp_path / "m2").exists()
