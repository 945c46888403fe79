"""Output writers: geometry of written images, lesion statistics, expert weight share, preview, CSV."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from mome.errors import OutputExistsError
from mome.inference.outputs import (
    expert_weight_share, image_like, lesion_stats, save_image, save_preview, stats_row, write_stats_csv,
    write_stats_json,
)

from inference_helpers import SHAPE, brain_image, oblique_affine, save_nii


def test_image_like_keeps_exact_geometry_and_codes(tmp_path):
    src = save_nii(tmp_path / "in.nii.gz", brain_image(), oblique_affine(), qform_code=2, sform_code=4)
    ref = nib.load(str(src))
    mask = np.zeros(SHAPE, np.uint8)
    mask[3:5, 4:9, 2:3] = 1
    out = save_image(image_like(mask, ref, np.uint8, "mask"), tmp_path / "mask.nii.gz")
    back = nib.load(str(out))
    assert back.shape == ref.shape and back.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(back.affine, ref.affine)
    np.testing.assert_array_equal(back.header.get_qform(), ref.header.get_qform())
    assert int(back.header["qform_code"]) == 2 and int(back.header["sform_code"]) == 4
    np.testing.assert_array_equal(np.asarray(back.dataobj), mask)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        save_image(image_like(mask, ref, np.uint8), out)


def test_lesion_volume_and_26_connected_count():
    affine = oblique_affine(spacing=(0.5, 2.0, 3.0))  # 3 mm^3 per voxel, rotation does not change it
    mask = np.zeros((10, 10, 10), np.uint8)
    mask[1:3, 1:3, 1:3] = 1          # lesion A: 8 voxels
    mask[3, 3, 3] = 1                # touches A only by a corner: same lesion under 26-connectivity
    mask[7:9, 7, 7] = 1              # lesion B: 2 voxels
    stats = lesion_stats(mask, affine)
    assert stats["lesion_count"] == 2 and stats["lesion_voxels"] == 11
    assert stats["voxel_volume_ml"] == pytest.approx(0.003)
    assert stats["lesion_volume_ml"] == pytest.approx(11 * 0.003)
    assert stats["lesion_volumes_ml"] == pytest.approx([9 * 0.003, 2 * 0.003])
    empty = lesion_stats(np.zeros((4, 4, 4)), np.eye(4))
    assert empty["lesion_count"] == 0 and empty["lesion_volume_ml"] == 0.0 and empty["lesion_volumes_ml"] == []


def test_expert_weight_share_softmax_and_identity():
    region = np.zeros((4, 4, 4), bool)
    region[1:3] = True
    soft = np.zeros((3, 2, 4, 4, 4), np.float32)
    soft[:, :, region] = np.array([0.6, 0.3, 0.1])[:, None, None]
    soft[:, :, ~region] = np.array([0.0, 0.0, 1.0])[:, None, None]  # outside the region: ignored
    assert expert_weight_share(soft, region, "softmax") == pytest.approx([0.6, 0.3, 0.1])
    raw = np.zeros((3, 2, 4, 4, 4), np.float32)
    raw[:, :, region] = np.array([2.0, -1.0, 1.0])[:, None, None]
    assert expert_weight_share(raw, region, "identity") == pytest.approx([0.5, 0.25, 0.25])
    assert expert_weight_share(raw, np.zeros((4, 4, 4), bool), "identity") == pytest.approx([1 / 3] * 3)
    gates = lesion_stats(np.zeros((4, 4, 4)), np.eye(4), brain_mask=region, gates=soft,
                         expert_names=["T1", "T2", "FLAIR"], gate_activation="softmax")
    assert gates["implicit_modality"] == "T1" and gates["expert_weight_share_in_lesion"] is None


def test_stats_files(tmp_path):
    stats = {"lesion_volume_ml": 1.5, "lesion_count": 2, "lesion_volumes_ml": [1.0, 0.5],
             "expert_weight_share": {"T1": 0.25, "FLAIR": 0.75}, "input": "a.nii.gz"}
    write_stats_json(stats, tmp_path / "s.json", overwrite=False)
    assert json.loads((tmp_path / "s.json").read_text()) == stats
    rows = [{"image": "a", **stats_row(stats)}, {"image": "b", "status": "error", "error": "bad"}]
    write_stats_csv(rows, tmp_path / "stats.csv")
    read = list(csv.DictReader((tmp_path / "stats.csv").open()))
    assert [r["image"] for r in read] == ["a", "b"]
    assert float(read[0]["share_FLAIR"]) == 0.75 and read[1]["error"] == "bad" and read[1]["share_T1"] == ""


@pytest.mark.parametrize("with_lesion", [True, False])
def test_preview_png(tmp_path, with_lesion):
    import matplotlib.image

    mask = np.zeros(SHAPE, np.uint8)
    if with_lesion:
        mask[6:12, 8:15, 5:10] = 1
    out = save_preview(brain_image(), mask, oblique_affine(), tmp_path / "p.png", title="case")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(str(out))
    assert pixels.shape[0] > 100 and pixels.shape[1] > 300
    red = pixels[..., 0] - pixels[..., 1] > 0.3  # the overlay; the image itself is grey
    assert (red.sum() > 20) if with_lesion else (red.sum() == 0)
