"""The named bad inputs of docs/reliability.md: each builds its files under a folder and returns the command.

Every case must end with one ``mome: error: ...`` line on stderr that contains ``expect``, exit status 1
(or ``code``), no traceback, and no file created, changed or removed anywhere under the folder.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np


@dataclass(frozen=True)
class BadInput:
    name: str
    what: str  # one line for docs/reliability.md
    expect: str  # a fragment of the one-line message
    build: Callable[[Path, Path], list]  # (folder, tiny model folder) -> CLI arguments
    code: int = 1


def brain(shape=(20, 23, 17), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros(shape, np.float32)
    img[2:-2, 2:-2, 2:-2] = 100 + 5 * rng.standard_normal(tuple(s - 4 for s in shape))
    img[6:12, 8:15, 5:10] += 200
    return img


def nii(path: Path, data, affine=None, dtype=None, **header) -> Path:
    data = np.asarray(data)
    img = nib.Nifti1Image(data if dtype is None else data.astype(dtype), np.eye(4) if affine is None else affine)
    for key, value in header.items():
        img.header[key] = value
    nib.save(img, str(path))
    return path


def _predict(image, out, model, *extra) -> list:
    return ["predict", "-i", image, "-o", out, "--model", model, "--device", "cpu", *extra]


def _image_case(name, what, expect, make, code=1) -> BadInput:
    """A bad image given to ``mome predict``."""
    def build(d: Path, model: Path) -> list:
        return _predict(make(d), d / "out" / "mask.nii.gz", model)
    return BadInput(name, what, expect, build, code)


def _truncated(d: Path, suffix: str) -> Path:
    """A brain volume written as ``t<suffix>`` and cut in half."""
    p = nii(d / f"full{suffix}", brain())
    raw = p.read_bytes()
    p.unlink()
    (d / f"t{suffix}").write_bytes(raw[: len(raw) // 2])
    return d / f"t{suffix}"


def _huge_header(d: Path, gz: bool) -> Path:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((30000, 30000, 30000))
    hdr.set_data_dtype(np.float32)
    hdr["vox_offset"] = 352
    blob = hdr.binaryblock + b"\0" * 4 + b"\1" * 100
    p = d / ("huge.nii.gz" if gz else "huge.nii")
    p.write_bytes(gzip.compress(blob) if gz else blob)
    return p


def _rgb(d: Path) -> Path:
    rgb = np.zeros((20, 23, 17), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"] = (brain() % 255).astype(np.uint8)
    img = nib.Nifti1Image(rgb, np.eye(4))
    nib.save(img, str(d / "rgb.nii.gz"))
    return d / "rgb.nii.gz"


def patch_header(path: Path, **fields) -> Path:
    """Rewrite header fields in the file itself (nibabel would fix or recompute them on save)."""
    from nibabel.openers import ImageOpener

    with ImageOpener(str(path)) as fh:
        raw = fh.read()
    hdr = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(raw), check=False)
    for key, value in fields.items():
        if key.startswith("pixdim"):
            hdr["pixdim"][int(key[-1])] = value
        else:
            hdr[key] = value
    raw = hdr.binaryblock + raw[len(hdr.binaryblock):]
    path.write_bytes(gzip.compress(raw) if str(path).endswith(".gz") else raw)
    return path


def _pixdim(d: Path, values) -> Path:
    """pixdim defines the voxel size (qform from it, no sform), with the file's own (unfixed) values."""
    p = nii(d / "pixdim.nii.gz", brain())
    return patch_header(p, sform_code=0, qform_code=1, pixdim1=values[0], pixdim2=values[1], pixdim3=values[2])


def _scaled(d: Path) -> Path:
    img = nib.Nifti1Image((brain() * 100).astype(np.int16), np.eye(4))
    img.header.set_slope_inter(1e36, 0)
    nib.save(img, str(d / "scaled.nii.gz"))
    return d / "scaled.nii.gz"


def _symlink_loop(d: Path) -> Path:
    a, b = d / "a.nii.gz", d / "b.nii.gz"
    os.symlink(b, a)
    os.symlink(a, b)
    return a


def _broken_link(d: Path) -> Path:
    os.symlink(d / "gone.nii.gz", d / "link.nii.gz")
    return d / "link.nii.gz"


def _singular(d: Path) -> Path:
    p = nii(d / "singular.nii.gz", brain())
    return patch_header(p, sform_code=1, qform_code=0, srow_z=np.zeros(4))


def _nan(d: Path) -> Path:
    img = brain()
    img[5, 5, 5] = np.nan
    return nii(d / "nan.nii.gz", img)


IMAGES = [
    _image_case("missing image", "the input path does not exist", "does not exist", lambda d: d / "none.nii.gz"),
    _image_case("wrong extension", "a text file given as the image", "not a NIfTI file",
                lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt"),
    _image_case("random bytes", "random bytes named .nii.gz", "could not be read as NIfTI",
                lambda d: (d / "x.nii.gz").write_bytes(os.urandom(2000)) and d / "x.nii.gz"),
    _image_case("empty file", "a zero-byte .nii", "could not be read as NIfTI",
                lambda d: (d / "e.nii").write_bytes(b"") or d / "e.nii"),
    _image_case("truncated .nii.gz", "a gzip cut in half", "truncated", lambda d: _truncated(d, ".nii.gz")),
    _image_case("truncated .nii", "an uncompressed file cut in half", "truncated", lambda d: _truncated(d, ".nii")),
    _image_case("lying header (.nii)", "30000^3 voxels declared in a 100-byte body", "voxels",
                lambda d: _huge_header(d, False)),
    _image_case("lying header (.nii.gz)", "the same, compressed", "voxels", lambda d: _huge_header(d, True)),
    _image_case("4D series", "three volumes in one file", "one 3D volume",
                lambda d: nii(d / "4d.nii.gz", np.stack([brain()] * 3, -1))),
    _image_case("2D image", "one slice", "one 3D volume", lambda d: nii(d / "2d.nii.gz", brain()[:, :, 0])),
    _image_case("one-voxel axis", "shape (20, 23, 1)", ">= 2 voxels", lambda d: nii(d / "thin.nii.gz", brain()[:, :, :1])),
    _image_case("NaN voxels", "one NaN voxel", "NaN", _nan),
    _image_case("all zeros", "an empty volume", "all zeros", lambda d: nii(d / "zero.nii.gz", np.zeros((20, 23, 17)))),
    _image_case("constant image", "every voxel 7 (got a confident 238 ml lesion before)", "constant",
                lambda d: nii(d / "const.nii.gz", np.full((20, 23, 17), 7.0, np.float32))),
    _image_case("mask as image", "a 0/1 mask given as the image", "looks like a mask",
                lambda d: nii(d / "mask.nii.gz", (brain() > 150).astype(np.uint8))),
    _image_case("2x2x2 image", "8 voxels (crashed inside InstanceNorm before)", "covers only",
                lambda d: nii(d / "tiny.nii.gz", np.random.default_rng(0).random((2, 2, 2)).astype(np.float32))),
    _image_case("noise strip", "2x2x200 noise (got a lesion before)", "covers only",
                lambda d: nii(d / "strip.nii.gz", np.random.default_rng(0).random((2, 2, 200)).astype(np.float32))),
    _image_case("pixdim 0", "voxel size 0 in the header (read as 1 mm before)", "voxel sizes",
                lambda d: _pixdim(d, [0.0, 1.0, 1.0])),
    _image_case("negative pixdim", "voxel size -1 mm", "voxel sizes", lambda d: _pixdim(d, [-1.0, 1.0, 1.0])),
    _image_case("absurd pixdim", "voxel size 1000 mm", "voxel sizes", lambda d: _pixdim(d, [1000.0, 1.0, 1.0])),
    _image_case("singular affine", "an affine that maps a whole axis to a point", "affine", _singular),
    _image_case("RGB image", "RGB colour voxels (crashed before)", "RGB", _rgb),
    _image_case("complex image", "complex voxels (real part used silently before)", "complex",
                lambda d: nii(d / "c.nii.gz", brain().astype(np.complex64))),
    _image_case("overflowing scaling", "scl_slope 1e36 (reported as NaN voxels before)", "scaling", _scaled),
    _image_case("symlink loop", "a.nii.gz -> b.nii.gz -> a.nii.gz (reported as missing before)", "link loop",
                _symlink_loop),
    _image_case("broken symlink", "a link to a file that is gone", "broken symbolic link", _broken_link),
    _image_case("folder without images", "batch mode on a folder with no NIfTI", "has no .nii",
                lambda d: (d / "empty").mkdir() or d / "empty"),
]


def _out_under_file(d: Path, model: Path) -> list:
    nii(d / "scan.nii.gz", brain())
    (d / "out.nii.gz").write_bytes(b"a file the user has")
    return _predict(d / "scan.nii.gz", d / "out.nii.gz" / "x.nii.gz", model)


def _existing_output(d: Path, model: Path) -> list:
    nii(d / "scan.nii.gz", brain())
    (d / "mask.nii.gz").write_bytes(b"an older mask")
    return _predict(d / "scan.nii.gz", d / "mask.nii.gz", model)


def _batch_into_file(d: Path, model: Path) -> list:
    (d / "in").mkdir()
    nii(d / "in" / "a.nii.gz", brain())
    (d / "results").write_text("a file")
    return _predict(d / "in", d / "results", model)


def _batch_into_input(d: Path, model: Path) -> list:
    (d / "in").mkdir()
    nii(d / "in" / "a.nii.gz", brain())
    return _predict(d / "in", d / "in", model)


def _synth_over_thesis(d: Path, model: Path) -> list:
    (d / "thesis").mkdir()
    (d / "thesis" / "chapter1.tex").write_text("years of work")
    return ["synth", "--preset", "tiny", "--out", d / "thesis", "--overwrite"]


def _evaluate_out_file(d: Path, model: Path) -> list:
    coll = _collection(d)
    (d / "preds").mkdir()
    nii(d / "preds" / "c1.nii.gz", np.zeros((20, 23, 17), np.uint8))
    (d / "report").write_text("not a folder")
    return ["evaluate", "--pred", d / "preds", "--collection", coll, "--out", d / "report"]


def _model_case(name, what, expect, edit) -> BadInput:
    """A copy of the tiny model folder whose config.json (or weights) ``edit`` damages."""
    def build(d: Path, model: Path) -> list:
        import shutil

        folder = d / "model"
        shutil.copytree(model, folder)
        edit(folder)
        nii(d / "scan.nii.gz", brain())
        return _predict(d / "scan.nii.gz", d / "out.nii.gz", folder)
    return BadInput(name, what, expect, build)


def _edit_config(change):
    def edit(folder: Path) -> None:
        rec = json.loads((folder / "config.json").read_text())
        change(rec)
        (folder / "config.json").write_text(json.dumps(rec))
    return edit


OUTPUTS = [
    BadInput("output under a file", "-o out.nii.gz/x.nii.gz where out.nii.gz is a file (traceback after the work "
             "before)", "is a file, not a folder", _out_under_file),
    BadInput("output in /proc", "-o /proc/mome/x.nii.gz (traceback after the work before)", "not writable",
             lambda d, m: (nii(d / "scan.nii.gz", brain()), _predict(d / "scan.nii.gz", "/proc/mome/x.nii.gz", m))[1]),
    BadInput("existing output", "the mask exists, no --overwrite", "--overwrite", _existing_output),
    BadInput("batch output is a file", "a folder of images, -o a file", "must be a folder", _batch_into_file),
    BadInput("batch output is the input", "masks would replace the images", "is the input folder", _batch_into_input),
    BadInput("--overwrite on a foreign folder", "mome synth --out thesis/ --overwrite (deleted the thesis before)",
             "mome did not write", _synth_over_thesis),
    BadInput("evaluate --out is a file", "the report folder is an existing file (traceback after scoring before)",
             "is a file, not a folder", _evaluate_out_file),
    BadInput("unknown registration mode", "--registration sometimes", "--registration",
             lambda d, m: (nii(d / "s.nii.gz", brain()),
                           _predict(d / "s.nii.gz", d / "o.nii.gz", m, "--registration", "sometimes"))[1]),
    BadInput("unknown model name", "--model no-such-model", "no-such-model",
             lambda d, m: (nii(d / "s.nii.gz", brain()), _predict(d / "s.nii.gz", d / "o.nii.gz", "no-such-model"))[1]),
    _model_case("corrupt weights", "model.safetensors overwritten with junk", "corrupt",
                lambda f: (f / "model.safetensors").write_bytes(b"junk" * 100)),
    _model_case("config not JSON", "config.json truncated", "not valid JSON",
                lambda f: (f / "config.json").write_text('{"config": {')),
    _model_case("negative features", "features_per_stage [-4, 8, 16]", "features_per_stage",
                _edit_config(lambda r: r["config"]["expert"].update(features_per_stage=[-4, 8, 16]))),
    _model_case("fractional features", "features_per_stage [4.5, 8, 16]", "features_per_stage",
                _edit_config(lambda r: r["config"]["expert"].update(features_per_stage=[4.5, 8, 16]))),
    _model_case("absurd features", "features_per_stage [4, 8, 10**9] (tried to allocate GBs before)",
                "features_per_stage",
                _edit_config(lambda r: r["config"]["expert"].update(features_per_stage=[4, 8, 10**9]))),
    _model_case("absurd spacing", "spacing_mm [1e-5, 1e-5, 1e-5] (resampled to terabytes before)", "spacing_mm",
                _edit_config(lambda r: r.update(spacing_mm=[1e-5, 1e-5, 1e-5]))),
    _model_case("string patch size", 'patch_size "big"', "patch_size",
                _edit_config(lambda r: r.update(patch_size="big"))),
]


def _collection(d: Path, **change) -> Path:
    """A one-case collection (image + 0/1 label) with ``change`` applied to its case entry."""
    (d / "data").mkdir(exist_ok=True)
    nii(d / "data" / "c1.nii.gz", brain())
    nii(d / "data" / "c1_label.nii.gz", (brain() > 250).astype(np.uint8))
    case = {"id": "c1", "image": "data/c1.nii.gz", "label": "data/c1_label.nii.gz", "modality": "T1",
            "dataset": "D", "lesion_type": "tumour", "split": "test", "seen": True}
    case.update(change)
    (d / "collection.json").write_text(json.dumps({"name": "t", "cases": [case]}))
    return d / "collection.json"


def _check_case(name, what, expect, make) -> BadInput:
    def build(d: Path, model: Path) -> list:
        return ["collection", "check", make(d)]
    return BadInput(name, what, expect, build)


def _with_image(d: Path, data) -> Path:
    coll = _collection(d)
    nii(d / "data" / "c1.nii.gz", data)
    return coll


def _truncated_in_collection(d: Path) -> Path:
    coll = _collection(d)
    raw = (d / "data" / "c1.nii.gz").read_bytes()
    (d / "data" / "c1.nii.gz").write_bytes(raw[: len(raw) // 2])
    return coll


def _nan_in_collection(d: Path) -> Path:
    img = brain()
    img[3, 3, 3] = np.nan
    return _with_image(d, img)


def _evaluate_multilabel(d: Path, model: Path) -> list:
    coll = _collection(d)
    lab = np.zeros((20, 23, 17), np.uint8)
    lab[5:8, 5:8, 5:8] = 2
    lab[9:10, 9:10, 9:10] = 255
    lab[1, 1, 1] = 1
    nii(d / "data" / "c1_label.nii.gz", lab)
    (d / "preds").mkdir()
    nii(d / "preds" / "c1.nii.gz", np.zeros((20, 23, 17), np.uint8))
    return ["evaluate", "--pred", d / "preds", "--collection", coll]


def _csv_quote(d: Path, model: Path) -> list:
    nii(d / "a.nii.gz", brain())
    (d / "t.csv").write_text('image,label,modality\na.nii.gz,"a.nii.gz,T1\n')
    return ["collection", "import", "csv", d / "t.csv", "--out", d / "c.json", "--dataset", "D",
            "--lesion-type", "tumour"]


def _train_no_training_cases(d: Path, model: Path) -> list:
    coll = _collection(d)  # the only case is split "test"
    return ["train", "experts", "--collection", coll, "--preset", "tiny", "--out", d / "run", "--epochs", "1"]


COLLECTIONS = [
    _check_case("seen as a string", '"seen": "false" (read as True before: an unseen dataset trained on)',
                "'seen'", lambda d: _collection(d, seen="false")),
    _check_case("image as a number", '"image": 123 (crashed before)', "'image'", lambda d: _collection(d, image=123)),
    _check_case("id as a number", '"id": 123 (reported as missing before)', "'id'", lambda d: _collection(d, id=123)),
    _check_case("unknown case key", 'a misspelt key "modalty"', "unknown key",
                lambda d: _collection(d, modalty="T1")),
    _check_case("manifest not JSON", "collection.json cut short", "not valid JSON",
                lambda d: (d / "c.json").write_text('{"cases": [') and d / "c.json"),
    _check_case("truncated image in a collection", "collection check said OK before", "truncated",
                _truncated_in_collection),
    _check_case("NaN image in a collection", "collection check said OK before", "NaN", _nan_in_collection),
    _check_case("empty image in a collection", "every voxel 0", "all zeros",
                lambda d: _with_image(d, np.zeros((20, 23, 17), np.float32))),
    BadInput("evaluate with a 0/1/2/255 label", "silently binarised before", "not binary", _evaluate_multilabel),
    BadInput("CSV with an unterminated quote", "reported as an unknown modality before", "could not be read",
             _csv_quote),
    BadInput("train without training cases", "crashed in the spacing code before", "no training cases",
             _train_no_training_cases),
]

def _scan_and_reference(d: Path, reference) -> tuple[Path, Path]:
    return nii(d / "scan.nii.gz", brain()), nii(d / "ref.nii.gz", reference, dtype=np.uint8)


def _tiny_sam(d: Path) -> Path:
    import torch

    from mome.model.baselines import SAMMed3D, sam_med3d_config
    from mome.weights.store import save_model

    torch.manual_seed(0)
    return save_model(SAMMed3D(sam_med3d_config("tiny")), d / "sam",
                      metadata={"interactive": True, "patch_size": [16] * 3, "spacing_mm": [1.0] * 3})


def _sam_checkpoint(d: Path, obj) -> Path:
    import torch

    torch.save(obj, str(d / "sam_med3d_turbo.pth"))
    return d / "sam_med3d_turbo.pth"


def _lesion(shape=(20, 23, 17)) -> np.ndarray:
    ref = np.zeros(shape, np.uint8)
    ref[6:12, 8:15, 5:10] = 1
    return ref


def _import_sam(d: Path, obj) -> list:
    return ["weights", "import-sam-med3d", _sam_checkpoint(d, obj), "--out", d / "sam_model"]


class _NotATensor:  # a class torch.load(weights_only=True) must refuse to unpickle
    pass


INTERACTIVE = [
    BadInput("clicks without a reference mask", "--clicks 10 and no --reference", "without a reference mask",
             lambda d, m: _predict(nii(d / "s.nii.gz", brain()), d / "o.nii.gz", m, "--clicks", "10")),
    BadInput("empty reference mask", "--reference of all zeros (nothing to click on)", "is empty",
             lambda d, m: _predict(*_scan_and_reference(d, np.zeros((20, 23, 17)))[:1], d / "o.nii.gz", m,
                                   "--reference", d / "ref.nii.gz")),
    BadInput("reference on another grid", "--reference of another shape than the image", "one grid",
             lambda d, m: _predict(*_scan_and_reference(d, _lesion((20, 23, 16)))[:1], d / "o.nii.gz", m,
                                   "--reference", d / "ref.nii.gz")),
    BadInput("interactive model without --reference", "a SAM-Med3D model folder, no --reference", "is interactive",
             lambda d, m: _predict(nii(d / "s.nii.gz", brain()), d / "o.nii.gz", _tiny_sam(d))),
    BadInput("--reference with an automatic model", "a reference mask given to MoME", "for interactive models",
             lambda d, m: _predict(_scan_and_reference(d, _lesion())[0], d / "o.nii.gz", m,
                                   "--reference", d / "ref.nii.gz")),
    BadInput("SAM-Med3D checkpoint of the wrong layout", "import-sam-med3d on a file of other tensors",
             "not a SAM-Med3D checkpoint", lambda d, m: _import_sam(d, {"model_state_dict": {"w": _zeros()}})),
    BadInput("SAM-Med3D checkpoint with code", "a pickled object, refused by weights_only=True", "cannot read",
             lambda d, m: _import_sam(d, {"model_state_dict": _NotATensor()})),
    BadInput("SAM-Med3D checkpoint truncated", "the checkpoint cut in half", "cannot read",
             lambda d, m: ["weights", "import-sam-med3d", _cut(_sam_checkpoint(d, {"w": _zeros()})),
                           "--out", d / "sam_model"]),
]


def _zeros():
    import torch

    return torch.zeros(3, 3)


def _cut(path: Path) -> Path:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def _two_scans(d: Path, second: str, affine=None) -> list:
    a = nii(d / "sub-01_T1w.nii.gz", brain())
    b = a if second == "same" else nii(d / second, brain(seed=1), affine=affine)
    return [a, b]


def _subject(d: Path, model: Path, second: str, affine=None, *extra) -> list:
    a, b = _two_scans(d, second, affine)
    return ["predict", "-i", a, "-i", b, "-o", d / "o.nii.gz", "--model", model, "--device", "cpu", *extra]


SUBJECTS = [
    BadInput("sequences on different grids", "two -i of different voxel sizes, no --preprocess", "not on the grid",
             lambda d, m: _subject(d, m, "sub-01_FLAIR.nii.gz", np.diag([2.0, 1.0, 1.0, 1.0]))),
    BadInput("sequences of different subjects", "sub-01_T1w and sub-02_FLAIR in one call", "different subjects",
             lambda d, m: _subject(d, m, "sub-02_FLAIR.nii.gz")),
    BadInput("one sequence given twice", "-i a.nii.gz -i a.nii.gz", "twice", lambda d, m: _subject(d, m, "same")),
    BadInput("--fusion with one image", "--fusion mean and a single -i", "two or more -i",
             lambda d, m: _predict(nii(d / "s.nii.gz", brain()), d / "o.nii.gz", m, "--fusion", "mean")),
    BadInput("unknown fusion rule", "--fusion median", "--fusion",
             lambda d, m: _subject(d, m, "sub-01_FLAIR.nii.gz", None, "--fusion", "median")),
]

def bids_dataset(d: Path, grids_differ: bool = False) -> Path:
    """A two-subject BIDS dataset: sub-01 (T1w + FLAIR on one grid, or on two with ``grids_differ``), sub-02
    (FLAIR)."""
    root = d / "bids"
    (root / "sub-01" / "anat").mkdir(parents=True)
    (root / "sub-02" / "anat").mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.9.0"}))
    nii(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz", brain())
    nii(root / "sub-01" / "anat" / "sub-01_FLAIR.nii.gz", brain(seed=1),
        np.diag([2.0, 1.0, 1.0, 1.0]) if grids_differ else None)
    nii(root / "sub-02" / "anat" / "sub-02_FLAIR.nii.gz", brain(seed=2))
    return root


def _bids(d: Path, model: Path, *extra, root=None, out=None) -> list:
    root = bids_dataset(d) if root is None else root
    return ["bids", root, d / "out" if out is None else out, "participant", "--model", model, "--device", "cpu",
            *extra]


def _bids_done(d: Path, model: Path) -> list:
    """sub-02 segmented with the default fusion; then asked again with --fusion mean on another subject set."""
    from mome.bids.app import run_participant

    root = bids_dataset(d)
    run_participant(root, d / "out", model=str(model), device="cpu", echo=lambda line: None)
    return _bids(d, model, "--fusion", "mean", root=root)


def _foreign_out(d: Path, model: Path) -> list:
    out = d / "other"
    out.mkdir()
    (out / "dataset_description.json").write_text(json.dumps({"Name": "x", "BIDSVersion": "1.9.0",
                                                              "DatasetType": "derivative"}))
    return _bids(d, model, out=out)


BIDS = [
    BadInput("BIDS root without dataset_description.json", "mome bids on a plain folder of images",
             "not a BIDS dataset", lambda d, m: _bids(d, m, root=(d / "plain").mkdir() or d / "plain")),
    BadInput("BIDS root missing", "mome bids on a folder that does not exist", "does not exist",
             lambda d, m: _bids(d, m, root=d / "nowhere")),
    BadInput("unknown participant label", "--participant-label 99 on a dataset of sub-01 and sub-02", "not in",
             lambda d, m: _bids(d, m, "--participant-label", "99")),
    BadInput("bad shard", "--shard 3/2", "--shard", lambda d, m: _bids(d, m, "--shard", "3/2")),
    BadInput("derivatives of other settings", "a rerun with --fusion mean over derivatives of the default fusion, "
             "without --overwrite", "other settings", _bids_done),
    BadInput("derivatives into the BIDS root", "OUT_DIR is BIDS_ROOT", "BIDS root itself",
             lambda d, m: _bids(d, m, root=bids_dataset(d), out=d / "bids")),
    BadInput("OUT_DIR of another dataset", "OUT_DIR holds a dataset_description.json mome did not write",
             "another dataset", _foreign_out),
    BadInput("BIDS sequences on different grids", "sub-01's T1w and FLAIR on two grids, no --preprocess",
             "not on the grid",
             lambda d, m: _bids(d, m, "--participant-label", "01", root=bids_dataset(d, grids_differ=True))),
    BadInput("group level before the participant level", "mome bids ... group on an empty OUT_DIR",
             "participant level first",
             lambda d, m: ["bids", bids_dataset(d), d / "out", "group"]),
]

CASES: list[BadInput] = IMAGES + OUTPUTS + COLLECTIONS + INTERACTIVE + SUBJECTS + BIDS
