"""mome's inference of imported nnU-Net models against nnU-Net v2's own ``nnUNetPredictor`` (nnunetv2 2.6.0).

Every configuration is a tiny trained-model folder in nnU-Net's on-disk format (random weights) and one
NIfTI; nnU-Net reads the file itself, mome reads it with nibabel. Lesion probabilities must agree to
1e-4 and the masks exactly, on the input's own voxel grid.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

pytest.importorskip("nnunetv2")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nnunet_model_folders import write_image, write_model_folder  # noqa: E402

from mome.errors import CheckpointError, ConfigError, NotImplementedFeatureError  # noqa: E402
from mome.inference.nnunet_backend import NnunetPredictor  # noqa: E402
from mome.weights.nnunet_folder import import_nnunet_folder  # noqa: E402
from mome.weights.store import load_model, read_model_record  # noqa: E402

TOL = 1e-4  # nnU-Net accumulates window logits in fp16 (both sides run the same code path)

CONFIGS = {
    "zscore-mask-sitk-iso": dict(folder=dict(), image=dict()),
    "zscore-nomask-nibabel-aniso-transposed": dict(
        folder=dict(use_mask=False, reader="NibabelIO", transpose=(2, 0, 1), spacing=(1.2, 1.0, 0.8)),
        image=dict(spacing=(0.9, 1.0, 3.5))),  # 3.5 mm slices: nnU-Net resamples z separately (order 0)
    "ct-sitk-newplans-mirror02-best": dict(
        folder=dict(scheme="CTNormalization", use_mask=False, transpose=(1, 0, 2), mirror_axes=(0, 2), fmt="2.6",
                    checkpoint="checkpoint_best.pth"),
        image=dict(spacing=(1.1, 0.8, 1.0))),
    "zscore-nomirror-fold-all": dict(folder=dict(mirror_axes=None, fold="all"), image=dict(hole=False)),
}


def nnunet_reference(root: Path, image: Path, out: Path, fold: str, checkpoint: str):
    """(lesion probability, mask) from nnU-Net's predictor, as (i, j, k) arrays of ``image``'s grid."""
    with contextlib.redirect_stdout(io.StringIO()):
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                    perform_everything_on_device=False, device=torch.device("cpu"),
                                    allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(root), use_folds=(fold,), checkpoint_name=checkpoint)
        predictor.predict_from_files_sequential([[str(image)]], [str(out / "case")], save_probabilities=True)
    probs = np.load(out / "case.npz")["probabilities"]
    mask = np.asarray(nib.load(str(out / "case.nii.gz")).dataobj)
    return probs[1].transpose(2, 1, 0), mask


@pytest.mark.parametrize("name", list(CONFIGS))
def test_imported_nnunet_model_matches_nnunet_predictor(name, tmp_path):
    cfg = CONFIGS[name]
    root = write_model_folder(tmp_path / "nnUNetTrainer__nnUNetPlans__3d_fullres", **cfg["folder"])
    image = write_image(tmp_path / "scan.nii.gz", **cfg["image"])
    fold = cfg["folder"].get("fold", "0")
    checkpoint = cfg["folder"].get("checkpoint", "checkpoint_final.pth")
    ref_p, ref_mask = nnunet_reference(root, image, tmp_path, fold, checkpoint)

    model_dir = import_nnunet_folder(root, tmp_path / "imported")
    record = read_model_record(model_dir)
    ours = NnunetPredictor(load_model(model_dir), record, device="cpu").predict_image(nib.load(str(image)))
    p = ours.lesion_probability
    assert p.shape == ref_p.shape == ref_mask.shape == nib.load(str(image)).shape
    assert 0.02 < ref_mask.mean() < 0.98, "degenerate comparison: the reference mask is (almost) constant"
    diff = float(np.abs(p - ref_p).max())
    print(f"{name}: max |p_mome - p_nnunet| = {diff:.2e}, lesion fraction {ref_mask.mean():.3f}")
    assert diff <= TOL
    np.testing.assert_array_equal(ours.mask, ref_mask)
    assert record["nnunet"]["inference_allowed_mirroring_axes"] == (
        None if cfg["folder"].get("mirror_axes", (0, 1, 2)) is None else list(cfg["folder"].get("mirror_axes", (0, 1, 2))))


def test_fast_mode_is_one_whole_volume_window_without_mirroring(tmp_path):
    root = write_model_folder(tmp_path / "model")
    image = nib.load(str(write_image(tmp_path / "scan.nii.gz")))
    model_dir = import_nnunet_folder(root, tmp_path / "imported")
    model, record = load_model(model_dir), read_model_record(model_dir)
    fast = NnunetPredictor(model, record, device="cpu", fast=True)
    calls = []
    net = fast.network
    original = net.forward
    net.forward = lambda x: calls.append(tuple(x.shape)) or original(x)
    pred = fast.predict_image(image)
    assert len(calls) == 1 and pred.info["patch_size"] == "whole" and pred.info["mirroring_axes"] is None
    full = NnunetPredictor(model, record, device="cpu").predict_image(image)
    agree = (pred.mask == full.mask).mean()
    print(f"fast vs nnU-Net default: mask agreement {agree:.3f}")
    assert pred.probabilities.shape == full.probabilities.shape


def test_plain_nnunet_folder_import_errors(tmp_path):
    root = write_model_folder(tmp_path / "model", fold="0")
    write_model_folder(tmp_path / "model", fold="1")
    with pytest.raises(CheckpointError, match="2 folds.*--fold"):
        import_nnunet_folder(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert import_nnunet_folder(root, tmp_path / "out", fold="1").is_dir()
    with pytest.raises(CheckpointError, match="no fold_7"):
        import_nnunet_folder(root, tmp_path / "out7", fold="7")
    # a fold folder alone and a checkpoint file alone are accepted too
    assert import_nnunet_folder(root / "fold_0", tmp_path / "f0").is_dir()
    assert import_nnunet_folder(root / "fold_0" / "checkpoint_final.pth", tmp_path / "c0").is_dir()


def test_plans_that_disagree_with_the_checkpoint_are_refused(tmp_path):
    import json

    root = write_model_folder(tmp_path / "model")
    plans = json.loads((root / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["patch_size"] = [32, 24, 16]
    (root / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(CheckpointError, match="field 'patch_size'"):
        import_nnunet_folder(root, tmp_path / "out")
    plans["configurations"]["3d_fullres"]["patch_size"] = [16, 12, 8]
    plans["configurations"]["3d_fullres"]["normalization_schemes"] = ["MyOwnNormalization"]
    (root / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(CheckpointError, match="normalization_schemes"):
        import_nnunet_folder(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_normalisation_and_missing_fields_are_one_clear_error(tmp_path):
    import json

    root = write_model_folder(tmp_path / "model")
    model_dir = import_nnunet_folder(root, tmp_path / "imported")
    model, record = load_model(model_dir), read_model_record(model_dir)
    bad = json.loads(json.dumps(record))
    bad["nnunet"]["plans"]["configurations"]["3d_fullres"]["normalization_schemes"] = ["MyOwnNormalization"]
    with pytest.raises(ConfigError, match="normalization_schemes.*MyOwnNormalization"):
        NnunetPredictor(model, bad, device="cpu")
    bad = json.loads(json.dumps(record))
    del bad["nnunet"]["plans"]["foreground_intensity_properties_per_channel"]["0"]
    with pytest.raises(ConfigError, match="foreground_intensity_properties_per_channel"):
        NnunetPredictor(model, bad, device="cpu")
    bad = json.loads(json.dumps(record))
    bad["nnunet"]["plans"]["image_reader_writer"] = "NibabelIOWithReorient"
    with pytest.raises(NotImplementedFeatureError, match="image_reader_writer"):
        NnunetPredictor(model, bad, device="cpu")
    # plans without the U-Net description: the missing field is named at import
    plans = json.loads((root / "plans.json").read_text())
    del plans["configurations"]["3d_fullres"]["conv_kernel_sizes"]
    (root / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(CheckpointError, match="conv_kernel_sizes"):
        import_nnunet_folder(root, tmp_path / "out")


class _ReleasedMoME(torch.nn.Module):
    """The released MoME forward (image + experts' first-stage features -> gate; raw weights x logits)."""

    def __init__(self, experts, gate):
        super().__init__()
        self.experts, self.gate = torch.nn.ModuleList(experts), gate

    def forward(self, x):
        from nnunet_fixtures import reference_mome

        return reference_mome(list(self.experts), self.gate, x)[0]


def _stock_nnunet(network, plans: dict, image: Path, out: Path) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        pm = PlansManager(plans)
        predictor = nnUNetPredictor(perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
        predictor.manual_initialization(network.eval(), pm, pm.get_configuration("3d_fullres"),
                                        [network.state_dict()], {"labels": {"background": 0, "abnormal": 1},
                                                                 "channel_names": {"0": "MRI"}, "file_ending": ".nii.gz"},
                                        "nnUNetTrainer", (0, 1, 2))
        predictor.predict_from_files_sequential([[str(image)]], [str(out / "case")], save_probabilities=True)
    return np.load(out / "case.npz")["probabilities"][1].transpose(2, 1, 0)


def test_official_mome_layout_matches_the_released_forward_through_nnunet(tmp_path):
    """The authors' fork does not crop to the non-zero box. Stock nnU-Net behaves the same on an image whose
    non-zero box is the whole image (two corner voxels at 1e-30, zero to float32), which gives the reference."""
    from nnunet_fixtures import write_official_mome

    from mome.weights.nnunet_checkpoint import load_nnunet_checkpoint
    from mome.weights.official import import_official

    experts, gate = write_official_mome(tmp_path / "hf" / "MoME_CHECKPOINT")
    plans = load_nnunet_checkpoint(tmp_path / "hf" / "MoME_CHECKPOINT" / "checkpoint_best.pth")["init_args"]["plans"]
    model_dir = import_official(tmp_path / "hf", tmp_path / "official")
    record = read_model_record(model_dir)
    assert record["nnunet"]["crop_to_nonzero"] is False and record["nnunet"]["preprocess_profile"] == "authors"
    ours = NnunetPredictor(load_model(model_dir), record, device="cpu")

    image = write_image(tmp_path / "scan.nii.gz", shape=(30, 26, 18))
    full_box = write_image(tmp_path / "scan_full_box.nii.gz", shape=(30, 26, 18), full_box=True)
    (tmp_path / "ref").mkdir()
    ref = _stock_nnunet(_ReleasedMoME(experts, gate), plans, full_box, tmp_path / "ref")
    p = ours.predict_image(nib.load(str(image))).lesion_probability
    diff = float(np.abs(p - ref).max())
    print(f"official MoME layout: max |p_mome - p_released| = {diff:.2e}; lesion fraction {(ref > 0.5).mean():.3f}")
    assert 0.005 < (ref > 0.5).mean() < 0.995 and ref.std() > 0.01  # not a constant map
    assert diff <= TOL
    np.testing.assert_array_equal(p > 0.5, ref > 0.5)
    # and the crop matters: stock nnU-Net on the image itself (cropped to the brain's box) differs
    (tmp_path / "stock").mkdir()
    stock = _stock_nnunet(_ReleasedMoME(experts, gate), plans, image, tmp_path / "stock")
    print(f"with stock nnU-Net's crop to the non-zero box instead: max |dp| = {np.abs(p - stock).max():.3f}")
    assert np.abs(p - stock).max() > 100 * TOL


def test_cli_import_nnunet_then_predict_with_nnunets_inference(tmp_path, monkeypatch, capsys):
    import json

    from test_predict_cli import mome_cli as _cli

    root = write_model_folder(tmp_path / "Dataset011" / "nnUNetTrainer__nnUNetPlans__3d_fullres")
    image = write_image(tmp_path / "scan.nii.gz")
    code, out, err = _cli(monkeypatch, capsys, "weights", "import-nnunet", root, "--out", tmp_path / "m")
    assert code == 0, err
    code, out, err = _cli(monkeypatch, capsys, "predict", "-i", image, "-o", tmp_path / "mask.nii.gz",
                          "--model", tmp_path / "m", "--stats", "--device", "cpu")
    assert code == 0, err
    stats = json.loads((tmp_path / "mask_stats.json").read_text())
    settings = stats["settings"]
    assert settings["backend"].startswith("nnunetv2") and settings["mirroring_axes"] == [0, 1, 2]
    assert settings["patch_size"] == [16, 12, 8] and settings["crop_to_nonzero"] is True
    mask = nib.load(str(tmp_path / "mask.nii.gz"))
    ref_p, ref_mask = nnunet_reference(root, image, tmp_path, "0", "checkpoint_final.pth")
    np.testing.assert_array_equal(np.asarray(mask.dataobj), ref_mask)
    code, out, err = _cli(monkeypatch, capsys, "predict", "-i", image, "-o", tmp_path / "fast.nii.gz",
                          "--model", tmp_path / "m", "--fast", "--stats", "--device", "cpu")
    assert code == 0, err
    assert json.loads((tmp_path / "fast_stats.json").read_text())["settings"]["patch_size"] == "whole"
    # options only mome's own predictor has: one clear line, nothing written
    code, out, err = _cli(monkeypatch, capsys, "predict", "-i", image, "-o", tmp_path / "x.nii.gz",
                          "--model", tmp_path / "m", "--skip-experts", "0.2")
    assert code == 1 and "--skip-experts" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.nii.gz").exists()
