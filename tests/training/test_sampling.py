"""Case preparation, patch cropping, foreground oversampling and reproducible augmented batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mome.data.collection import load_collection
from mome.training.augment import deep_supervision_scales, initial_patch_size
from mome.training.data import load_cases, prepare_case, training_spacing
from mome.training.sampling import EpochSampler, PatchBatches, crop_patch, forced_foreground, rank_positions


@pytest.fixture(scope="module")
def prepared(collection_path):
    cases = load_collection(collection_path).filter(split="train").cases[:4]
    return load_cases(cases, training_spacing(cases))


def test_prepare_case_zscores_in_brain_and_encodes_labels(collection_path):
    case = load_collection(collection_path).cases[0]
    p = prepare_case(case, [2.0, 2.0, 2.0])
    brain = p.label >= 0
    assert p.image.shape == (24, 24, 24) and p.image.dtype == np.float32
    assert abs(p.image[brain].mean()) < 1e-4 and p.image[brain].std() == pytest.approx(1, abs=1e-3)
    assert np.all(p.image[~brain] == 0)
    assert set(np.unique(p.label)) == {-1, 0, 1}
    assert len(p.foreground) == int((p.label == 1).sum()) and np.all(p.label[tuple(p.foreground.T)] == 1)
    coarse = prepare_case(case, [4.0, 4.0, 4.0])  # resampled to the training spacing
    assert coarse.image.shape == (12, 12, 12) and set(np.unique(coarse.label)) <= {-1, 0, 1}


def test_ds_scales_and_initial_patch():
    assert deep_supervision_scales([[1, 1, 1], [2, 2, 2], [2, 2, 2]]) == [[1, 1, 1], [0.5, 0.5, 0.5]]
    big = initial_patch_size([32, 32, 32])
    assert all(b > 32 for b in big) and big[0] == big[1] == big[2]
    assert initial_patch_size([32, 32, 32], augmentation=False) == [32, 32, 32]


def test_foreground_oversampling_follows_nnunets_batch_rule():
    assert [forced_foreground(i, 2, 0.33) for i in range(2)] == [False, True]
    assert [forced_foreground(i, 3, 0.33) for i in range(3)] == [False, False, True]
    assert [forced_foreground(i, 2, 0.0) for i in range(2)] == [False, False]
    assert list(rank_positions(2, 0, 2)) == [0] and list(rank_positions(2, 1, 2)) == [1]
    assert list(rank_positions(5, 0, 2)) == [0, 1, 2] and list(rank_positions(5, 1, 2)) == [3, 4]


def test_crop_patch_pads_and_centres_on_lesions(prepared):
    rng = np.random.default_rng(0)
    p = prepared[0]
    for _ in range(10):
        image, seg = crop_patch(p, [8, 8, 8], True, rng)
        assert (seg == 1).any(), "a forced-foreground patch must contain lesion"
    image, seg = crop_patch(p, [40, 40, 40], False, rng)  # larger than the 24^3 volume: padded
    assert image.shape == (40, 40, 40) and (seg == -1).sum() > 40**3 - 24**3 - 1
    assert (seg >= 0).sum() == (p.label >= 0).sum()  # the whole brain fits in the padded patch


def test_batches_are_reproducible_and_well_formed(prepared):
    ds = PatchBatches(prepared, ["T1", "T2", "T1ce", "FLAIR", "DWI"], [16, 16, 16], 2,
                      [[1, 1, 1], [0.5, 0.5, 0.5]], seed=3)
    a, b, c = ds[(0, 1)], ds[(0, 1)], ds[(1, 1)]
    assert a["image"].shape == (2, 1, 16, 16, 16) and a["image"].dtype == torch.float32
    assert [t.shape for t in a["target"]] == [(2, 1, 16, 16, 16), (2, 1, 8, 8, 8)]
    assert torch.equal(a["image"], b["image"]) and all(torch.equal(x, y) for x, y in zip(a["target"], b["target"]))
    assert not torch.equal(a["image"], c["image"])
    assert set(torch.unique(a["target"][0]).tolist()) <= {0, 1}
    assert (a["target"][0][1] == 1).any(), "the second batch position is foreground-oversampled"
    mods = ["T1", "T2", "T1ce", "FLAIR", "DWI"]
    assert [mods[i] for i in a["modality"].tolist()] == a["modality_name"]
    assert a["task"] == [f"{d}/{m}" for d, m in zip(a["dataset"], a["modality_name"])]
    state = torch.get_rng_state()
    ds[(2, 0)]
    assert torch.equal(state, torch.get_rng_state()), "augmentation must not consume the global torch stream"


def test_epoch_sampler_keys():
    s = EpochSampler(3)
    s.set_epoch(5)
    assert list(s) == [(5, 0), (5, 1), (5, 2)] and len(s) == 3


def test_unknown_modality_is_refused(prepared):
    with pytest.raises(ValueError, match="no expert"):
        PatchBatches(prepared, ["FLAIR"], [16, 16, 16], 2, None)


@pytest.mark.parametrize("shift", [0.0, 3.0])
def test_intensity_shift_moves_the_brain_not_the_background(shift):
    """--intensity-shift adds one random offset to a patch's brain voxels (half the patches); the
    background stays 0 (masking comes after it). Seeded, so the counts below are fixed."""
    from mome.training.augment import training_transforms

    transform = training_transforms([16, 16, 16], None, True, intensity_shift=shift)
    torch.manual_seed(0)
    means = []
    for _ in range(40):
        image = torch.zeros(1, 24, 24, 24)
        seg = torch.full((1, 24, 24, 24), -1, dtype=torch.int16)
        image[:, 8:16, 8:16, 8:16] = 1.0  # small enough to stay inside the patch when zoomed
        seg[:, 8:16, 8:16, 8:16] = 0
        out = transform(image=image, segmentation=seg)["image"]
        brain = out != 0
        assert brain.any() and (~brain).any(), "the brain stays non-zero and the background zero"
        means.append(float(out[brain].mean()))
    far = sum(abs(m - 1.0) > 1.5 for m in means)
    if shift:
        assert far >= 5, means
    else:  # nnU-Net's own intensity transforms keep a constant brain within x0.75-1.25 (+ noise)
        assert max(abs(m - 1.0) for m in means) < 1.0, means
