"""The synthetic benchmark generator on the ``tiny`` preset: structure, determinism, physics, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from mome.cli.main import app
from mome.data.collection import load_collection
from mome.data.constants import MODALITIES
from mome.data.mni import mni_grid, mni_maps
from mome.data.synth import (
    DATASETS, SYNTH_PRESETS, generate_benchmark, lesion_cnr, make_synth_config, synth_subject,
)
from mome.data.synth.contrast import render
from mome.data.synth.shapes import parse_lesion_mask_args, resample_mask
from mome.data.validate import validate_collection
from mome.errors import ConfigError, DataError, OutputExistsError

SPACING = SYNTH_PRESETS["tiny"].spacing_mm
ONLY_ISLES = {d.name: (0, 0) for d in DATASETS} | {"ISLES": (1, 0)}


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.glob("*/*.nii.gz"))}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "tiny"
    generate_benchmark("tiny", out, seed=0)
    return out


# ---------------------------------------------------------------- structure
def test_structure(tiny):
    col = load_collection(tiny)
    validate_collection(col)  # files exist, geometry of image and label match, labels binary
    assert {c.dataset for c in col} == {"BraTS", "ATLAS", "ISLES", "WMH", "MSSEG", "OASIS", "Tumour1", "Tumour2",
                                        "WMHsMix"}
    assert len(col.tasks()) == 17 and set(col.modalities()) == set(MODALITIES)
    seen_tasks = {c.task for c in col if c.seen}
    unseen_tasks = {c.task for c in col if not c.seen}
    assert len(seen_tasks) == 14
    assert unseen_tasks == {"Tumour1/FLAIR", "Tumour2/T2", "WMHsMix/FLAIR"}
    # unseen datasets carry a few train cases (task-specific upper bounds), all flagged unseen
    assert {c.task for c in col.filter(split="train", seen=False)} == unseen_tasks
    assert all(c.seen == (c.dataset not in ("Tumour1", "Tumour2", "WMHsMix")) for c in col)
    # the paper's modality sets (Supplementary Table II)
    mods = {d: {c.modality for c in col if c.dataset == d} for d in {c.dataset for c in col}}
    assert mods["BraTS"] == mods["MSSEG"] == {"T1", "T1ce", "T2", "FLAIR"}
    assert mods["ATLAS"] == {"T1"} and mods["ISLES"] == {"DWI"} and mods["WMH"] == mods["OASIS"] == {"T1", "FLAIR"}
    # one subject = several cases sharing the subject id and (except BraTS T1ce's core label) the label
    brats = [c for c in col if c.subject == "brats_train_0000"]
    assert {c.id for c in brats} == {f"brats_train_0000_{m}" for m in ("T1", "T1ce", "T2", "FLAIR")}
    labels = {c.modality: c.label.name for c in brats}
    assert labels["T1"] == labels["T2"] == labels["FLAIR"] != labels["T1ce"] == "brats_train_0000_core.nii.gz"
    assert {c.lesion_type for c in col if c.dataset == "ISLES"} == {"stroke_acute"}


def test_files_geometry_and_types(tiny):
    shape, affine = mni_grid(SPACING)
    col = load_collection(tiny)
    case = next(c for c in col if c.dataset == "BraTS" and c.modality == "T1ce")
    img, lab = nib.load(case.image), nib.load(case.label)
    assert img.shape == lab.shape == shape
    assert np.allclose(img.affine, affine) and np.allclose(lab.affine, affine)
    assert img.get_data_dtype() == np.float32 and lab.get_data_dtype() == np.uint8
    assert set(np.unique(np.asarray(lab.dataobj))) == {0, 1}
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    # the brain sits where MNI152's brain sits: its centre of mass (world mm) within a few mm
    data = np.asarray(img.dataobj)
    com_world = affine[:3, :3] @ np.argwhere(data > 0).mean(0) + affine[:3, 3]
    ref_world = affine[:3, :3] @ np.argwhere(mni_maps(SPACING)["mask"] > 0).mean(0) + affine[:3, 3]
    assert np.linalg.norm(com_world - ref_world) < 6.0


def test_reports_and_provenance(tiny):
    rows = (tiny / "contrast.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 17 and rows[0].startswith("task,seen,train images,test images,lesion CNR mean")
    assert "| BraTS/T1ce | seen | 1 | 1 |" in (tiny / "contrast.md").read_text()
    assert len((tiny / "cases_contrast.csv").read_text().strip().splitlines()) == 1 + 34
    png = (tiny / "montage.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    prov = json.loads((tiny / "collection.json").read_text())["provenance"]
    assert prov["seed"] == 0 and "numpy" in prov["versions"] and "nibabel" in prov["versions"]
    assert prov["synth_config"]["preset"] == "tiny" and prov["synth_config"]["shape"] == list(mni_grid(SPACING)[0])
    assert [d["name"] for d in prov["datasets"]] == [d.name for d in DATASETS]


def test_cpu_preset_sizes():
    cfg = make_synth_config("cpu")
    assert cfg.shape == (80, 98, 80) and cfg.spacing_mm == 2.0
    assert all(cfg.test_subjects[d.name] >= 8 for d in DATASETS)  # every task >= 8 test images
    seen_train = {d.name: cfg.train_subjects[d.name] for d in DATASETS if d.seen}
    assert max(seen_train, key=seen_train.get) == "BraTS"  # the paper's imbalance, compressed
    assert make_synth_config("paper").shape == (160, 196, 160)


# ---------------------------------------------------------------- determinism
def test_same_seed_same_bytes(tiny, tmp_path):
    again = tmp_path / "again"
    generate_benchmark("tiny", again, seed=0)
    # 34 images, 18 subject labels + 2 BraTS tumour-core labels
    assert _hashes(again) == _hashes(tiny) and len(_hashes(tiny)) == 34 + 18 + 2
    cases = [json.loads((f / "collection.json").read_text())["cases"] for f in (again, tiny)]
    assert cases[0] == cases[1]


def test_subjects_do_not_depend_on_the_others_or_seed(tiny, tmp_path):
    only = generate_benchmark("tiny", tmp_path / "only", seed=0, subjects_override=ONLY_ISLES)
    assert [c.id for c in only] == ["isles_train_0000_DWI"]
    name = "images/isles_train_0000_DWI.nii.gz"
    assert _hashes(tmp_path / "only")[name] == _hashes(tiny)[name]
    generate_benchmark("tiny", tmp_path / "seed1", seed=1, subjects_override=ONLY_ISLES)
    assert _hashes(tmp_path / "seed1")[name] != _hashes(tiny)[name]


def test_in_memory_subject_matches_file(tiny):
    subject = synth_subject("BraTS", "train", 0, seed=0, spacing_mm=SPACING)
    on_disk = np.asarray(nib.load(tiny / "images/brats_train_0000_T2.nii.gz").dataobj)
    assert np.array_equal(subject.images["T2"], on_disk)


# ---------------------------------------------------------------- physics
def _cnrs(dataset, modalities, label="whole", n=2, extra_render=None):
    """Signed CNR of the lesion (a label name or a compartment name) per modality, mean of ``n`` subjects."""
    out = {m: [] for m in modalities}
    for i in range(n):
        s = synth_subject(dataset, "train", i, seed=0, spacing_mm=SPACING)
        images = dict(s.images)
        for m in extra_render or ():
            images[m] = render(s.anatomy, s.compartments, m, s.dataset.profile, np.random.default_rng(i))
        mask = s.labels[label] if label in s.labels else s.compartments[label] > 0.5
        for m in modalities:
            out[m].append(lesion_cnr(images[m], mask, s.anatomy.brain, SPACING))
    return {m: float(np.mean(v)) for m, v in out.items()}


def test_wmh_brighter_contrast_on_flair_than_t1():
    c = _cnrs("WMH", ("T1", "FLAIR"))
    assert c["FLAIR"] > 2.0 and c["FLAIR"] > 3 * abs(c["T1"])  # bright on FLAIR
    assert -1.0 < c["T1"] < -0.05  # faint (slightly dark) on T1, not invisible


def test_tumour_core_contrast_on_t1ce_above_t1():
    core = _cnrs("BraTS", ("T1", "T1ce"), label="core")
    assert core["T1ce"] > core["T1"] + 1.0  # the core (BraTS T1ce label) is brighter on T1ce
    rim = _cnrs("BraTS", ("T1", "T1ce"), label="enhancing")  # what delineates the core: its enhancing rim
    assert rim["T1ce"] > 1.5 and rim["T1ce"] > 3 * abs(rim["T1"])


def test_acute_stroke_contrast_on_dwi_above_t1():
    c = _cnrs("ISLES", ("T1", "DWI"), extra_render=("T1",))
    assert c["DWI"] > 2.5 and c["DWI"] > 4 * abs(c["T1"])


def test_tissue_ordering():
    s = synth_subject("MSSEG", "train", 0, seed=0, spacing_mm=SPACING)
    a = s.anatomy
    healthy = s.labels["whole"] == 0
    mean = {t: {m: float(s.images[m][(p > 0.8) & healthy].mean()) for m in s.images}
            for t, p in (("gm", a.gm), ("wm", a.wm), ("csf", a.csf))}
    assert mean["csf"]["T2"] > 1.5 * mean["wm"]["T2"]  # CSF bright on T2
    assert mean["csf"]["FLAIR"] < 0.6 * mean["wm"]["FLAIR"]  # and dark on FLAIR
    assert mean["wm"]["T1"] > mean["gm"]["T1"] > mean["csf"]["T1"]
    # T1ce = T1 + enhancement: superficial veins are bright on T1ce only
    veins = a.vessels > 0.5
    assert veins.any() and s.images["T1ce"][veins].mean() / s.images["T1ce"][a.wm > 0.8].mean() > \
        s.images["T1"][veins].mean() / s.images["T1"][a.wm > 0.8].mean() + 0.3


def test_unseen_scanner_profiles_outside_seen_ranges():
    seen = [d.profile for d in DATASETS if d.seen]
    for d in (d for d in DATASETS if not d.seen):
        p = d.profile
        assert p.noise[0] > max(s.noise[1] for s in seen)
        assert p.blur_mm[0] > max(s.blur_mm[1] for s in seen)
        assert p.gamma[1] < min(s.gamma[0] for s in seen)


# ---------------------------------------------------------------- real lesion shapes
def _mask_folder(folder: Path, centre_mm=(30.0, -10.0, 20.0)) -> Path:
    """One 2 mm MNI-space mask (another grid than the preset's) with a 12 mm cube at ``centre_mm``."""
    folder.mkdir()
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = (-90.0, -126.0, -72.0)
    data = np.zeros((91, 109, 91), np.uint8)
    c = np.round((np.asarray(centre_mm) - aff[:3, 3]) / 2).astype(int)
    data[c[0] - 3:c[0] + 3, c[1] - 3:c[1] + 3, c[2] - 3:c[2] + 3] = 1
    nib.save(nib.Nifti1Image(data, aff), folder / "lesion_001.nii.gz")
    return folder


def test_resample_mask_lands_at_its_world_position(tmp_path):
    folder = _mask_folder(tmp_path / "stroke_masks")
    shape, affine = mni_grid(4.0)
    soft = resample_mask(folder / "lesion_001.nii.gz", shape, affine)
    com = affine[:3, :3] @ (np.argwhere(soft > 0) * 1.0).T @ soft[soft > 0] / soft.sum() + affine[:3, 3]
    assert np.allclose(com, (29.0, -11.0, 19.0), atol=1.5)  # cube centre (voxel corners at -1 mm)
    assert abs(soft.sum() * 4.0**3 - 12.0**3) / 12.0**3 < 0.1  # volume kept (partial volume)


def test_lesion_masks_are_used(tmp_path):
    folder = _mask_folder(tmp_path / "stroke_masks")
    col = generate_benchmark("tiny", tmp_path / "out", seed=0, lesion_masks=[f"stroke={folder}"],
                             subjects_override=ONLY_ISLES)
    lab = np.asarray(nib.load(col.cases[0].label).dataobj)
    shape, affine = mni_grid(SPACING)
    com = affine[:3, :3] @ np.argwhere(lab).mean(0) + affine[:3, 3]
    assert np.linalg.norm(com - (29.0, -11.0, 19.0)) < 12.0  # the real shape (moved by the deformation)
    prov = json.loads((tmp_path / "out/collection.json").read_text())["provenance"]
    assert prov["lesion_masks"] == {"stroke": [str(folder.resolve())]}


def test_lesion_mask_arguments(tmp_path):
    (tmp_path / "ms_mni").mkdir()
    (tmp_path / "stroke_mni").mkdir()
    (tmp_path / "other").mkdir()
    got = parse_lesion_mask_args([tmp_path / "ms_mni", str(tmp_path / "stroke_mni"), f"ms={tmp_path / 'other'}"])
    assert got == {"ms": [tmp_path / "ms_mni", tmp_path / "other"], "stroke": [tmp_path / "stroke_mni"]}
    with pytest.raises(DataError, match="cannot tell the lesion kind"):
        parse_lesion_mask_args([tmp_path / "other"])
    with pytest.raises(DataError, match="unknown lesion kind 'tumour'"):
        parse_lesion_mask_args([f"tumour={tmp_path / 'other'}"])
    with pytest.raises(DataError, match="not a folder"):
        parse_lesion_mask_args([f"ms={tmp_path / 'missing'}"])


def test_bad_mask_files_write_nothing(tmp_path):
    empty = tmp_path / "stroke_empty"
    empty.mkdir()
    with pytest.raises(DataError, match="holds no .nii"):
        generate_benchmark("tiny", tmp_path / "out", lesion_masks=[empty])
    corrupt = tmp_path / "stroke_corrupt"
    corrupt.mkdir()
    (corrupt / "bad.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(DataError, match="bad.nii.gz could not be read"):
        generate_benchmark("tiny", tmp_path / "out", lesion_masks=[corrupt], subjects_override=ONLY_ISLES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stroke_corrupt", "stroke_empty"]  # no temp left


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown synth preset 'huge'"):
        generate_benchmark("huge", tmp_path / "a")
    with pytest.raises(ConfigError, match="unknown dataset 'BRATS'"):
        make_synth_config("tiny", {"BRATS": (1, 1)})
    with pytest.raises(ConfigError, match="integer >= 0"):
        make_synth_config("tiny", {"BraTS": {"train": -1}})
    with pytest.raises(ConfigError, match="no subject"):
        make_synth_config("tiny", {d.name: (0, 0) for d in DATASETS})
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------- CLI
def test_cli_refuses_existing_output_and_bad_masks(tiny, tmp_path):
    runner = CliRunner()
    before = _hashes(tiny)
    res = runner.invoke(app, ["synth", "--preset", "tiny", "--out", str(tiny), "--seed", "0"])
    assert res.exit_code == 1 and isinstance(res.exception, OutputExistsError)
    assert "--overwrite" in str(res.exception) and _hashes(tiny) == before
    res = runner.invoke(app, ["synth", "--preset", "tiny", "--out", str(tmp_path / "new"),
                              "--lesion-masks", str(tmp_path / "nowhere")])
    assert isinstance(res.exception, DataError) and "cannot tell the lesion kind" in str(res.exception)
    res = runner.invoke(app, ["synth", "--preset", "tiny", "--out", str(tmp_path / "new"),
                              "--lesion-masks", f"stroke={tmp_path / 'nowhere'}"])
    assert isinstance(res.exception, DataError) and "not a folder" in str(res.exception)
    res = runner.invoke(app, ["synth", "--preset", "huge", "--out", str(tmp_path / "new")])
    assert res.exit_code == 2  # typer rejects the choice
    assert not any(tmp_path.iterdir())


def test_cli_overwrite(tmp_path):
    """--overwrite replaces a folder mome wrote, stale files included (a foreign folder is refused:
    tests/reliability)."""
    out = tmp_path / "out"
    assert CliRunner().invoke(app, ["synth", "-p", "tiny", "-o", str(out), "--seed", "1"]).exit_code == 0
    (out / "stale.txt").write_text("old")
    res = CliRunner().invoke(app, ["synth", "-p", "tiny", "-o", str(out), "--seed", "2", "--overwrite"])
    assert res.exit_code == 0, res.output
    assert not (out / "stale.txt").exists() and len(load_collection(out)) == 34
    assert "34 cases" in res.stdout
