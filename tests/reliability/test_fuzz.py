"""Property-based fuzzing (hypothesis, fixed seed, bounded examples) of NIfTI files, manifests and model configs.

The invariant for every command run: either success with outputs of the input's exact shape and affine,
or one ``mome: error:`` line on stderr, exit status 1, and no file created, changed or removed. Never a
traceback, never an internal error.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bad_inputs import brain
from reliability_helpers import run_cli, snapshot

#: examples per fuzz test (fixed seed: derandomize); the counts are in docs/reliability.md
N_NIFTI, N_MANIFEST, N_CONFIG = 150, 60, 50
FUZZ = settings(max_examples=N_NIFTI, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))

DTYPES = ["uint8", "int16", "int32", "uint16", "float32", "float64", "complex64", "int8", "uint32"]  # nibabel writes no bool
ODD_FLOATS = st.sampled_from([0.0, -1.0, 1e-9, 1e9, float("nan"), float("inf"), 0.5, 1.0, 2.0, 3.3])


def _check_invariant(code, out, err, before, after, work: Path, image: Path, mask: Path):
    assert "Traceback" not in out + err and "internal error" not in err, err
    if code == 0:
        ref, got = nib.load(str(image)), nib.load(str(mask))
        assert got.shape[:3] == ref.shape[:3]
        np.testing.assert_allclose(got.affine, ref.affine, atol=1e-5)
    else:
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 1 and len(lines) == 1 and lines[0].startswith("mome: error: "), (code, err)
        assert after == before, "a failed run created, changed or removed files"


MUTATIONS = ["2d", "4d", "4d1", "constant", "zeros", "binary", "odd_voxel", "odd_affine", "odd_pixdim", "scaling",
             "truncate", "oblique", "anisotropic", "flip", "codes", "dtype"]


@st.composite
def nifti_files(draw):
    """(bytes of a .nii, gzip?): a valid brain volume with 0-3 random mutations of its dims, dtype, voxels,
    pixdim, affine, header codes, scaling or length (half the examples stay valid-looking)."""
    shape = tuple(draw(st.integers(12, 24)) for _ in range(3))
    muts = set(draw(st.lists(st.sampled_from(MUTATIONS), max_size=3)))
    for m in muts:
        event(f"mutation {m}")  # pytest --hypothesis-show-statistics lists how often each was tried
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    data = brain(shape, seed=int(rng.integers(1000))).astype(np.float64)
    if "constant" in muts:
        data = np.full(shape, 5.0)
    if "zeros" in muts:
        data = np.zeros(shape)
    if "binary" in muts:
        data = (data > 150).astype(float)
    if "odd_voxel" in muts:
        data.flat[draw(st.integers(0, data.size - 1))] = draw(ODD_FLOATS)
    if "2d" in muts:
        data = data[:, :, 0]
    elif "4d" in muts:
        data = np.stack([data, data], -1)
    elif "4d1" in muts:
        data = data[..., None]
    dtype = draw(st.sampled_from(DTYPES)) if "dtype" in muts else draw(st.sampled_from(["float32", "int16", "uint8"]))
    with np.errstate(all="ignore"):
        arr = data.astype(dtype)
    zooms = [draw(st.sampled_from([0.6, 1.0, 2.5])) for _ in range(3)] if "anisotropic" in muts else [1.0] * 3
    affine = np.diag(zooms + [1.0])
    if "flip" in muts:
        affine[0, 0] *= -1
        affine = affine[:, [1, 0, 2, 3]]  # a permuted, flipped voxel order
    if "oblique" in muts:
        a = draw(st.floats(-3.14, 3.14))
        rot = np.eye(4)
        rot[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
        affine = rot @ affine
    affine[:3, 3] = draw(st.sampled_from([0.0, -90.0, 12.5]))
    if "odd_affine" in muts:
        affine[draw(st.integers(0, 2)), draw(st.integers(0, 3))] = draw(ODD_FLOATS)
    with np.errstate(all="ignore"):
        try:
            img = nib.Nifti1Image(arr, affine, dtype=arr.dtype)
        except Exception:  # noqa: BLE001 - nibabel refuses some affines (it cannot decompose them)
            img = nib.Nifti1Image(arr, np.eye(4), dtype=arr.dtype)
    hdr = img.header
    if "codes" in muts:
        hdr["sform_code"], hdr["qform_code"] = draw(st.sampled_from([(0, 1), (0, 0), (2, 0), (1, 2)]))
    if "scaling" in muts and arr.dtype.kind in "iu":
        hdr["scl_slope"], hdr["scl_inter"] = draw(ODD_FLOATS), draw(ODD_FLOATS)
    bio = io.BytesIO()
    with np.errstate(all="ignore"):
        try:
            img.to_file_map(nib.Nifti1Image.make_file_map({"image": bio, "header": bio}))
        except Exception:  # noqa: BLE001 - an unwritable header: write the plain image instead
            bio = io.BytesIO()
            nib.Nifti1Image(arr, np.eye(4), dtype=arr.dtype).to_file_map(nib.Nifti1Image.make_file_map({"image": bio, "header": bio}))
    raw = bytearray(bio.getvalue())
    if "odd_pixdim" in muts:  # written into the bytes: nibabel would fix it on save
        offset = 76 + 4 * draw(st.integers(1, 3))
        raw[offset:offset + 4] = np.float32(draw(ODD_FLOATS)).tobytes()
    if "truncate" in muts:
        raw = raw[: int(len(raw) * draw(st.sampled_from([0.1, 0.5, 0.99])))]
    return bytes(raw), draw(st.booleans())


@FUZZ
@given(nifti_files())
def test_fuzzed_nifti_predict(tiny_model, monkeypatch, capsys, file):
    raw, gz = file
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        image = work / ("scan ü.nii.gz" if gz else "scan ü.nii")
        image.write_bytes(gzip.compress(raw) if gz else raw)
        mask = work / "out" / "mask.nii.gz"
        before = snapshot(work)
        with np.errstate(all="ignore"):
            code, out, err = run_cli(monkeypatch, capsys, "predict", "-i", image, "-o", mask, "--model", tiny_model,
                                     "--device", "cpu")
        _check_invariant(code, out, err, before, snapshot(work), work, image, mask)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False)
                           | st.text(max_size=12), lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
CASE_KEYS = ["id", "image", "label", "modality", "dataset", "lesion_type", "split", "seen", "subject", "extra"]


@settings(max_examples=N_MANIFEST, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.dictionaries(st.sampled_from(CASE_KEYS), JSON_VALUES, max_size=4), st.sampled_from(["check", "train"]))
def test_fuzzed_manifest(monkeypatch, capsys, changes, command):
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "data").mkdir()
        nib.save(nib.Nifti1Image(brain(), np.eye(4)), str(work / "data" / "c1.nii.gz"))
        nib.save(nib.Nifti1Image((brain() > 250).astype(np.uint8), np.eye(4)), str(work / "data" / "l1.nii.gz"))
        case = {"id": "c1", "image": "data/c1.nii.gz", "label": "data/l1.nii.gz", "modality": "T1",
                "dataset": "D", "lesion_type": "tumour", "split": "test", "seen": True, **changes}
        (work / "collection.json").write_text(json.dumps({"name": "fuzz", "cases": [case]}))
        before = snapshot(work)
        args = (["collection", "check", work / "collection.json"] if command == "check" else
                ["train", "experts", "--collection", work / "collection.json", "--preset", "tiny", "--out",
                 work / "run", "--epochs", "1", "--iterations", "1", "--no-progress"])
        code, out, err = run_cli(monkeypatch, capsys, *args)
        assert "Traceback" not in out + err and "internal error" not in err, err
        if command == "train" and code == 0:
            return  # a valid training manifest (split train): it trained; nothing to compare
        lines = [line for line in err.splitlines() if line.strip()]
        if code == 0:
            assert not lines or not lines[-1].startswith("mome: error"), err
        else:
            assert code == 1 and len(lines) == 1 and lines[0].startswith("mome: error: "), (code, err)
            assert snapshot(work) == before


CONFIG_PATHS = [("config", "expert", "features_per_stage"), ("config", "expert", "strides"),
                ("config", "expert", "kernel_sizes"), ("config", "expert", "n_conv_per_stage"),
                ("config", "expert", "num_classes"), ("config", "modalities"), ("config", "gate_type"),
                ("config", "kind"), ("patch_size",), ("spacing_mm",), ("modalities",), ("config",)]


@settings(max_examples=N_CONFIG, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.sampled_from(CONFIG_PATHS), JSON_VALUES | st.lists(st.integers(-5, 5000), min_size=1, max_size=8))
def test_fuzzed_model_config(tiny_model, monkeypatch, capsys, path, value):
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = work / "model"
        shutil.copytree(tiny_model, folder)
        rec = json.loads((folder / "config.json").read_text())
        node = rec
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        (folder / "config.json").write_text(json.dumps(rec))
        image = work / "scan.nii.gz"
        nib.save(nib.Nifti1Image(brain(), np.eye(4)), str(image))
        mask = work / "mask.nii.gz"
        before = snapshot(work)
        code, out, err = run_cli(monkeypatch, capsys, "predict", "-i", image, "-o", mask, "--model", folder,
                                 "--device", "cpu")
        _check_invariant(code, out, err, before, snapshot(work), work, image, mask)
