"""The domain-randomised generator: label maps and lesion masks checked, samples reproducible and sane."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mome.data.domain.generator import LESION_CONTRAST, TASKS, DomainGenerator
from mome.data.domain.label_maps import find_label_maps, label_map_to_mni, on_spacing, t1_like
from mome.data.domain.lesion_bank import LesionBank, LesionCrop, check_lesion_folder, load_lesion_bank
from mome.data.mni import mni_grid
from mome.errors import InputError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def _toy_label_map(spacing: float = 2.0) -> np.ndarray:
    """Nested ellipsoids on the MNI box: cortex (3/42) around white matter (2/41), ventricles (4/43),
    a 'skull' class (515) outside: the FreeSurfer labels the generator knows."""
    shape, _ = mni_grid(spacing)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    r = np.sqrt((grid ** 2).sum(0))
    left = grid[0] < 0
    out = np.zeros(shape, np.int32)
    out[r < 0.95] = 515
    out[r < 0.85] = np.where(left, 3, 42)[r < 0.85]
    out[r < 0.7] = np.where(left, 2, 41)[r < 0.7]
    out[r < 0.2] = np.where(left, 4, 43)[r < 0.2]
    return out


def _toy_bank(spacing: float = 2.0) -> LesionBank:
    shape, _ = mni_grid(spacing)
    blob = np.zeros((5, 4, 3), bool)
    blob[1:4, 1:3, :] = True
    c = tuple(n // 2 - 8 for n in shape)
    return LesionBank(tuple(shape), {"ms": [LesionCrop(c, blob)], "stroke_acute": [LesionCrop(c, blob)]})


def test_samples_are_reproducible_and_labelled_where_the_modality_shows_the_lesion():
    gen = DomainGenerator([_toy_label_map()], _toy_bank(), spacing_mm=2.0)
    a = gen.sample(np.random.default_rng(5), "FLAIR")
    b = gen.sample(np.random.default_rng(5), "FLAIR")
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)
    seen = set()
    for seed in range(24):
        modality = ("T1", "T1ce", "T2", "FLAIR", "DWI")[seed % 5]
        case = gen.sample(np.random.default_rng(seed), modality)
        assert case.case.modality == modality
        assert case.case.lesion_type in (*TASKS[modality], "none")
        brain = case.label >= 0
        assert case.image.shape == case.label.shape == mni_grid(2.0)[0]
        assert np.all(case.image[~brain] == 0)
        vals = case.image[brain]
        assert abs(float(vals.mean())) < 1e-3 and abs(float(vals.std()) - 1) < 1e-2  # z-scored in the brain
        assert (case.case.lesion_type == "none") == (not np.any(case.label == 1))
        assert len(case.foreground) == min(int((case.label == 1).sum()), 10_000)
        seen.add(case.case.lesion_type)
    assert {"tumour", "none"} <= seen and seen & {"ms", "stroke_acute", "stroke_chronic"}


def test_the_share_of_lesion_free_volumes_is_a_setting():
    from mome.data.domain.generator import GeneratorConfig

    healthy = DomainGenerator([_toy_label_map()], _toy_bank(), spacing_mm=2.0, config=GeneratorConfig(p_no_lesion=1.0))
    assert all(healthy.sample(np.random.default_rng(s), "FLAIR").case.lesion_type == "none" for s in range(3))
    sick = DomainGenerator([_toy_label_map()], _toy_bank(), spacing_mm=2.0, config=GeneratorConfig(p_no_lesion=0.0))
    assert all(sick.sample(np.random.default_rng(s), "FLAIR").case.lesion_type != "none" for s in range(3))


def test_lesion_contrast_follows_the_modality():
    """MS lesions are brighter than their host on FLAIR and T2 (the prior's contrast, before noise)."""
    gen = DomainGenerator([_toy_label_map()], _toy_bank(), spacing_mm=2.0)
    for modality in ("FLAIR", "T2"):
        diffs = []
        for seed in range(40):
            case = gen.sample(np.random.default_rng(100 + seed), modality)
            if case.case.lesion_type != "ms":
                continue
            lesion = case.label == 1
            from scipy import ndimage

            ring = ndimage.binary_dilation(lesion, iterations=2) & ~lesion & (case.label == 0)
            diffs.append(float(case.image[lesion].mean() - case.image[ring].mean()))
        assert len(diffs) >= 3 and np.median(diffs) > 0, (modality, diffs)


def test_bad_label_map_and_lesion_folders_are_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        find_label_maps(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .nii"):
        find_label_maps(tmp_path / "empty")
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((8, 8, 8)).astype(np.float32), np.eye(4)),
             str(img_dir / "t1.nii.gz"))
    with pytest.raises(InputError, match="looks like an image"):
        find_label_maps(img_dir)
    four_d = tmp_path / "4d"
    four_d.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.int16), np.eye(4)), str(four_d / "a.nii.gz"))
    with pytest.raises(InputError, match="one 3D volume"):
        find_label_maps(four_d)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(InputError, match="not a readable NIfTI"):
        find_label_maps(broken)
    no_brain = tmp_path / "nobrain"
    no_brain.mkdir()
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.int16), np.eye(4)), str(no_brain / "a.nii.gz"))
    with pytest.raises(InputError, match="lacks the FreeSurfer labels"):
        find_label_maps(no_brain)
    with pytest.raises(InputError, match="no ms_mni/"):
        check_lesion_folder(tmp_path / "empty")
    (tmp_path / "les" / "ms_mni").mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.full((4, 4, 4), 3, np.int16), np.eye(4)), str(tmp_path / "les" / "ms_mni" / "a.nii.gz"))
    with pytest.raises(InputError, match="not binary"):
        check_lesion_folder(tmp_path / "les")


def test_lesion_bank_resamples_masks_onto_the_box(tmp_path):
    """A mask on FSL's MNI grid lands at the same world position on mome's 2 mm box."""
    folder = tmp_path / "les" / "ms_mni"
    folder.mkdir(parents=True)
    fsl = np.array([[-1.0, 0, 0, 90], [0, 1, 0, -126], [0, 0, 1, -72], [0, 0, 0, 1]])
    mask = np.zeros((182, 218, 182), np.uint8)
    mask[80:90, 120:130, 70:80] = 1  # world x 0..9 (mirrored axis), y -6..3, z -2..7
    nib.save(nib.Nifti1Image(mask, fsl), str(folder / "p1.nii.gz"))
    bank = load_lesion_bank(tmp_path / "les", 2.0, cache_dir=tmp_path / "cache")
    (crop,) = bank.crops["ms"]
    shape, affine = mni_grid(2.0)
    full = bank.paste("ms", np.random.default_rng(1), flip=False)
    centre_world = (affine @ np.r_[np.argwhere(full).mean(0), 1])[:3]
    expected = (fsl @ np.r_[np.argwhere(mask).mean(0), 1])[:3]
    assert np.abs(centre_world - expected).max() < 1.5, (centre_world, expected)
    again = load_lesion_bank(tmp_path / "les", 2.0, cache_dir=tmp_path / "cache")  # from the cache
    np.testing.assert_array_equal(again.crops["ms"][0].mask, crop.mask)


@pytest.mark.skipif(not (SHARED / "label_maps" / "synthseg").is_dir(), reason="shared label maps not available")
def test_real_label_map_registers_onto_the_template(tmp_path):
    """One SynthSeg map: its brain covers the template's and its white matter lies on the template's brighter
    white matter (registration ~60 s)."""
    from mome.data.mni import load_mni_crop

    path = sorted((SHARED / "label_maps" / "synthseg").glob("*.nii.gz"))[0]
    m = label_map_to_mni(path, 1.0, cache_dir=tmp_path)
    assert m.labels.shape == (160, 196, 160) and m.ncc_after > 0.4
    wm = np.isin(m.labels, (2, 41))
    t1 = load_mni_crop("t1")
    assert t1[wm].mean() > 1.1 * t1[np.isin(m.labels, (3, 42))].mean()  # WM brighter than cortex on T1 (1.18)
    brain, template = (m.labels > 0) & (m.labels < 500), load_mni_crop("mask").astype(bool)
    assert 2 * (brain & template).sum() / (brain.sum() + template.sum()) > 0.9  # measured 0.963
    assert on_spacing(m.labels, 2.0).shape == mni_grid(2.0)[0]
    assert t1_like(m.labels).max() == 1.0


def test_labelled_lesions_stand_apart_from_every_normal_tissue():
    """A labelled one-signed compartment ends at least MIN_MARGIN beyond the extreme normal tissue mean
    (brighter than cortex on FLAIR, darker than the darkest tissue for a T1 cavity); an unlabelled one
    (T1 oedema) keeps its faint host-relative contrast."""
    from mome.data.domain.generator import MIN_MARGIN

    gen = DomainGenerator([_toy_label_map()], _toy_bank(), spacing_mm=2.0)
    tissue = {"wm": 0.40, "cortex": 0.62}
    image = np.full((12, 12, 12), tissue["wm"], np.float32)
    image[:, :, 8:] = tissue["cortex"]
    mask = np.zeros(image.shape, bool)
    mask[4:8, 4:8, 2:6] = True
    for seed in range(10):
        rng = np.random.default_rng(seed)
        out = gen._add_lesion(image, {"ms": mask}, "FLAIR", rng, {"ms"}, list(tissue.values()))
        # texture noise is at most 0.05 * |N(0,1)|: the mean over 64 voxels is within 0.05 * 4 / 8 of the shift
        assert out[mask].mean() >= max(tissue.values()) + MIN_MARGIN - 0.025
        out = gen._add_lesion(image, {"stroke_chronic": mask}, "T1", rng, {"stroke_chronic"}, [0.5, 0.8])
        assert out[mask].mean() <= 0.5 - MIN_MARGIN + 0.025
        faint = gen._add_lesion(image, {"oedema": mask}, "T1", rng, set(), [0.5, 0.8])
        assert tissue["wm"] - 0.25 - 0.025 <= faint[mask].mean() <= tissue["wm"] - 0.08 + 0.025


def test_every_labelled_compartment_has_a_one_signed_contrast():
    """What the margin rule needs to keep a labelled lesion visible: on T1 / T1ce the label is the tumour
    core (rim + necrosis), elsewhere a lesion kind is its own compartment (a whole tumour is carried by
    its oedema)."""
    for modality, kinds in TASKS.items():
        labelled = [k for k in kinds if k != "tumour"]
        if "tumour" in kinds:
            labelled += ["rim", "necrosis"] if modality in ("T1", "T1ce") else ["oedema"]
        for name in labelled:
            lo, hi = LESION_CONTRAST[modality][name]
            assert lo * hi > 0, (modality, name)


def test_the_share_of_random_contrasts_is_a_setting():
    """``p_random_contrast`` 0 draws every label mean from the modality's prior (T1: white matter brighter
    than cortex by 0.3, jitter 0.1, so in nearly every draw); 1 draws them all at random (about half)."""
    from mome.data.domain.generator import GeneratorConfig

    labels = _toy_label_map()
    shares = {}
    for p in (0.0, 1.0):
        gen = DomainGenerator([labels], _toy_bank(), spacing_mm=2.0, config=GeneratorConfig(p_random_contrast=p))
        brighter = [means[2] > means[3] for means in
                    (gen._intensities(labels, "T1", np.random.default_rng(seed))[1] for seed in range(40))]
        shares[p] = float(np.mean(brighter))
    assert shares[0.0] >= 0.95 and 0.2 <= shares[1.0] <= 0.8, shares
