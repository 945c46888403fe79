"""Multi-sequence fusion (one subject, several -i) and the QC flags of the stats JSON (the refused subjects are
named bad inputs: tests/reliability/bad_inputs.py)."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import mome
from mome.cli.main import app
from mome.errors import ConfigError
from mome.inference.fusion import declared_modality, fuse, fused_spread, modality_weights
from mome.inference.qc import qc_flags


@pytest.mark.parametrize("name, modality", [
    ("sub-01_ses-1_FLAIR.nii.gz", "FLAIR"), ("sub-01_ce-gad_T1w.nii.gz", "T1ce"), ("sub-01_T1w.nii.gz", "T1"),
    ("sub-01_T2w.nii", "T2"), ("sub-01_dwi.nii.gz", "DWI"), ("brats_test_0000_T1ce.nii.gz", "T1ce"),
    ("case_t1.nii.gz", "T1"), ("scan.nii.gz", None), ("t2flair.nii.gz", None), ("sub-01_acq-t1_FLAIR.nii.gz", "FLAIR"),
])
def test_declared_modality(name, modality):
    assert declared_modality(name) == modality


def test_fusion_rules():
    a = np.array([0.2, 0.9, 0.6], np.float32)
    b = np.array([0.6, 0.1, 0.6], np.float32)
    np.testing.assert_allclose(fuse([a, b], "mean"), [0.4, 0.5, 0.6], atol=1e-7)
    np.testing.assert_allclose(fuse([a, b], "max"), [0.6, 0.9, 0.6], atol=1e-7)
    np.testing.assert_allclose(fuse([a, b], "weighted", [3.0, 1.0]), [0.3, 0.7, 0.6], atol=1e-6)
    with pytest.raises(ConfigError):
        fuse([a, b], "weighted", [0.0, 0.0])
    with pytest.raises(ConfigError):
        fuse([a, b], "median")
    assert modality_weights(["FLAIR", None, "DWI"], {"FLAIR": 0.6, "T1": 0.2}) == [0.6, 0.4, 0.4]


def test_qc_flags_each_warning():
    mask = np.zeros((10, 10, 10), np.uint8)
    brain = np.zeros_like(mask, dtype=bool)
    brain[1:9, 1:9, 1:9] = True
    assert qc_flags({"lesion_volume_ml": 0.1}, mask, brain)["warnings"] == []
    mask[0, :, :] = 1  # every lesion voxel outside the brain
    warnings = qc_flags({"lesion_volume_ml": 500.0, "implicit_modality": "T1",
                         "expert_weight_share": {"T1": 0.7}}, mask, brain, "FLAIR",
                        {"ncc_after": 0.1, "skipped": False})["warnings"]
    assert [w.split(":")[0] for w in warnings] == ["modality", "registration", "volume", "outside the brain"]
    # a gate without a clear favourite (under 40% of the weight) says nothing about the modality
    unclear = {"lesion_volume_ml": 0.0, "implicit_modality": "T2", "expert_weight_share": {"T2": 0.3}}
    assert qc_flags(unclear, np.zeros_like(mask), brain, "FLAIR")["warnings"] == []
    # the registration check reads mutual information where the record has it (a correct T2 has a
    # negative NCC with the T1 template), NCC only in records without it
    quiet = {"lesion_volume_ml": 0.0}
    t2_ok = {"ncc_after": -0.174, "mi_after": 0.062, "skipped": False}
    assert qc_flags(quiet, np.zeros_like(mask), brain, None, t2_ok)["warnings"] == []
    wrong = {"ncc_after": 0.3, "mi_after": 0.033, "skipped": False}
    assert qc_flags(quiet, np.zeros_like(mask), brain, None, wrong)["warnings"][0].startswith("registration")
    skipped = {"ncc_after": 0.1, "mi_after": 0.01, "skipped": "MNI152 grid"}
    assert qc_flags(quiet, np.zeros_like(mask), brain, None, skipped)["warnings"] == []


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("fusion_model") / "tiny"
    mome.save_model(mome.create_model("tiny"), folder,
                    metadata={"patch_size": [16, 16, 16], "spacing_mm": [1.0, 1.0, 1.0], "modalities": ["T1"],
                              "fusion_weights": {"T1": 0.1, "FLAIR": 0.9},
                              "fusion_weights_source": "test"})
    return folder


def _scan(path, seed, shape=(20, 23, 17), affine=None):
    rng = np.random.default_rng(seed)
    data = np.zeros(shape, np.float32)
    data[2:-2, 2:-2, 2:-2] = 100 + 5 * rng.standard_normal(tuple(s - 4 for s in shape))
    data[6:12, 8:15, 5:10] += 80
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def _reference_predictor(model_dir, **options):
    """The model's own predictor with the CLI's settings (fp32, one whole-volume window): the reference."""
    from mome.inference.predictor import Predictor
    from mome.weights.store import load_model, read_model_record

    return Predictor.from_record(load_model(model_dir), read_model_record(model_dir), device="cpu",
                                 patch_size="whole", precision="fp32", **options)


def _run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_cli_fuses_one_subject(tmp_path, tiny_model):
    t1 = _scan(tmp_path / "sub-01_T1w.nii.gz", 0)
    flair = _scan(tmp_path / "sub-01_FLAIR.nii.gz", 1)
    out = tmp_path / "out" / "sub-01_mask.nii.gz"
    code, output = _run("predict", "-i", t1, "-i", flair, "-o", out, "--model", tiny_model, "--device", "cpu",
                        "--stats", "--probabilities", "--precision", "fp32")
    assert code == 0, output
    assert "fused 2 sequences (weighted, weights T1 0.10, FLAIR 0.90)" in output
    mask = nib.load(str(out))
    assert mask.shape == (20, 23, 17) and np.allclose(mask.affine, np.eye(4))
    stats = json.loads((tmp_path / "out" / "sub-01_mask_stats.json").read_text())
    assert [s["declared_modality"] for s in stats["sequences"]] == ["T1", "FLAIR"]
    assert stats["fusion"]["rule"] == "weighted" and stats["fusion"]["weights"] == [0.1, 0.9]
    # the fused map is the weighted mean of the per-sequence maps of the same model
    predictor = _reference_predictor(tiny_model)
    expected = fuse([predictor.predict_image(nib.load(str(p))).lesion_probability for p in (t1, flair)],
                    "weighted", [0.1, 0.9])
    prob = np.asarray(nib.load(str(tmp_path / "out" / "sub-01_mask_probabilities.nii.gz")).dataobj)
    np.testing.assert_allclose(prob, expected, atol=1e-5)


def test_fused_spread_is_the_mixture_standard_deviation():
    p = [np.array([0.2, 0.9], np.float32), np.array([0.6, 0.9], np.float32)]
    u = [np.array([0.1, 0.0], np.float32), np.array([0.3, 0.0], np.float32)]
    # weights 3:1 -> w = (0.75, 0.25); first voxel: mean 0.3, variance 0.75 (0.01 + 0.01) + 0.25 (0.09 + 0.09)
    np.testing.assert_allclose(fused_spread(p, u, "weighted", [3.0, 1.0]), [np.sqrt(0.06), 0.0], atol=1e-6)
    # equal weights for mean (and max): 0.5 (0.01 + 0.04) + 0.5 (0.09 + 0.04)
    np.testing.assert_allclose(fused_spread(p, u, "mean"), [np.sqrt(0.09), 0.0], atol=1e-6)
    # a sequence the weighted fusion ignores adds nothing
    np.testing.assert_allclose(fused_spread(p, u, "weighted", [1.0, 0.0]), [0.1, 0.0], atol=1e-6)


def test_cli_fused_uncertainty(tmp_path, tiny_model):
    t1 = _scan(tmp_path / "sub-01_T1w.nii.gz", 0)
    flair = _scan(tmp_path / "sub-01_FLAIR.nii.gz", 1)
    out = tmp_path / "out" / "m.nii.gz"
    code, output = _run("predict", "-i", t1, "-i", flair, "-o", out, "--model", tiny_model, "--device", "cpu",
                        "--stats", "--uncertainty", "--precision", "fp32")
    assert code == 0, output
    predictor = _reference_predictor(tiny_model, uncertainty=True)
    preds = [predictor.predict_image(nib.load(str(p))) for p in (t1, flair)]
    expected = fused_spread([q.lesion_probability for q in preds], [q.uncertainty for q in preds], "weighted",
                            [0.1, 0.9])
    got = np.asarray(nib.load(str(tmp_path / "out" / "m_uncertainty.nii.gz")).dataobj)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    stats = json.loads((tmp_path / "out" / "m_stats.json").read_text())
    assert "uncertainty_scan" in stats and "uncertainty_lesions" in stats


def test_learned_fusion_features_and_formula():
    from mome.inference.learned_fusion import apply, features, logit

    order = ["T1", "FLAIR"]
    p = [np.array([0.2, 0.7], np.float32), np.array([0.9, 0.4], np.float32), np.array([0.5, 0.5], np.float32)]
    x = features(p, ["FLAIR", "FLAIR", "T1"], order)  # two FLAIRs: their logits are averaged
    np.testing.assert_allclose(x[:, 1], (logit(p[0]) + logit(p[1])) / 2, atol=1e-6)
    np.testing.assert_allclose(x[:, 0], 0.0, atol=1e-7)  # logit(0.5)
    np.testing.assert_array_equal(x[:, 2:], 1.0)
    params = {"modalities": order, "coef": [0.5, 2.0, -1.0, 0.3], "intercept": -0.2}
    got = apply(p[:1], ["FLAIR"], params)  # T1 absent: neither its logit nor its offset counts
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-(2.0 * logit(p[0]) + 0.3 - 0.2))), atol=1e-5)
    with pytest.raises(ConfigError, match="knows the modalities"):
        apply(p[:1], ["DWI"], params)
    with pytest.raises(ConfigError, match="no learned fusion"):
        apply(p[:1], ["FLAIR"], None)
    with pytest.raises(ConfigError, match="malformed"):
        apply(p[:1], ["FLAIR"], {"modalities": order, "coef": [1.0], "intercept": 0.0})


def test_cli_learned_fusion_needs_a_fitted_model(tmp_path, tiny_model):
    t1 = _scan(tmp_path / "sub-01_T1w.nii.gz", 0)
    flair = _scan(tmp_path / "sub-01_FLAIR.nii.gz", 1)
    code, output = _run("predict", "-i", t1, "-i", flair, "-o", tmp_path / "m.nii.gz", "--model", tiny_model,
                        "--device", "cpu", "--fusion", "learned")
    assert code != 0 and not (tmp_path / "m.nii.gz").exists()
    fitted = tmp_path / "fitted"
    shutil.copytree(tiny_model, fitted)
    cfg = json.loads((fitted / "config.json").read_text())
    cfg["fusion_learned"] = {"modalities": ["T1", "T2", "T1ce", "FLAIR", "DWI"],
                             "coef": [0.2, 0.0, 0.0, 1.5, 0.0, -0.1, 0.0, 0.0, 0.2, 0.0], "intercept": -0.5}
    (fitted / "config.json").write_text(json.dumps(cfg))
    code, output = _run("predict", "-i", t1, "-i", flair, "-o", tmp_path / "m.nii.gz", "--model", fitted,
                        "--device", "cpu", "--fusion", "learned", "--stats", "--precision", "fp32")
    assert code == 0, output
    from mome.inference.learned_fusion import apply
    predictor = _reference_predictor(fitted)
    expected = apply([predictor.predict_image(nib.load(str(p))).lesion_probability for p in (t1, flair)],
                     ["T1", "FLAIR"], cfg["fusion_learned"])
    np.testing.assert_array_equal(np.asarray(nib.load(str(tmp_path / "m.nii.gz")).dataobj), expected > 0.5)
    assert json.loads((tmp_path / "m_stats.json").read_text())["fusion"]["rule"] == "learned"
