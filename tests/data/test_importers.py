"""Importers: nnU-Net raw datasets, subject folders and CSV tables (tiny fabricated NIfTIs)."""

from __future__ import annotations

import json
import sys

import nibabel as nib
import numpy as np
import pytest

from mome.cli import main as cli_main
from mome.data.collection import load_collection
from mome.data.folder_import import import_csv, import_folder
from mome.data.nnunet_import import import_nnunet
from mome.data.validate import validate_collection
from mome.errors import DataError, OutputExistsError

SHAPE = (6, 7, 5)


def _nii(path, data, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), str(path))
    return path


def _labelmap(seed):
    """Label map with classes 1 (oedema), 2 (necrosis), 3 (enhancing)."""
    lab = np.zeros(SHAPE, np.uint8)
    lab[1:3, 1:4, 1:3] = 1
    lab[3, 2:4, 2] = 2
    lab[4, 4, 3 + seed % 2] = 3
    return lab


def _nnunet(root, channels=None, n_train=3, n_test=2, labelled_test=1, ignore=False):
    """A fabricated nnU-Net raw dataset under root/Dataset001_Demo."""
    src = root / "Dataset001_Demo"
    channels = channels or {"0": "FLAIR", "1": "T1w"}
    labels = {"background": 0, "edema": 1, "necrosis": 2, "enhancing": 3}
    if ignore:
        labels["ignore"] = 4
    src.mkdir(parents=True)
    (src / "dataset.json").write_text(json.dumps({"channel_names": channels, "labels": labels,
                                                  "numTraining": n_train, "file_ending": ".nii.gz"}))
    rng = np.random.default_rng(1)
    for i in range(n_train + n_test):
        tr = i < n_train
        case = f"demo_{i:03d}"
        for ch in channels:
            _nii(src / ("imagesTr" if tr else "imagesTs") / f"{case}_{int(ch):04d}.nii.gz",
                 rng.random(SHAPE).astype(np.float32))
        if tr or i - n_train < labelled_test:
            lab = _labelmap(i)
            if ignore:
                lab[0, 0, 0] = 4
            _nii(src / ("labelsTr" if tr else "labelsTs") / f"{case}.nii.gz", lab)
    return src


def _nothing_written(out):
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".") or "labels" in p.name] == []


def test_nnunet_import_default_rule(tmp_path):
    src = _nnunet(tmp_path)
    out = tmp_path / "out" / "collection.json"
    res = import_nnunet(src, out, dataset="Demo", lesion_type="tumour", seen=False)
    coll = validate_collection(load_collection(out))
    assert len(coll) == 8  # 3 train + 1 labelled test case, 2 channels each
    assert coll.counts() == {("Demo", "FLAIR", "train"): 3, ("Demo", "T1", "train"): 3,
                             ("Demo", "FLAIR", "test"): 1, ("Demo", "T1", "test"): 1}
    assert all(not c.seen and c.lesion_type == "tumour" for c in coll)
    c = next(c for c in coll if c.id == "Demo_demo_001_T1")
    assert c.subject == "Demo_demo_001" and c.image == (src / "imagesTr" / "demo_001_0001.nii.gz").resolve()
    flair = next(d for d in coll if d.id == "Demo_demo_001_FLAIR")
    assert flair.label == c.label  # modalities share one label
    assert c.label.parent == out.parent / "collection_labels"  # reduced, written next to the manifest
    reduced = np.asarray(nib.load(str(c.label)).dataobj)
    np.testing.assert_array_equal(reduced, (_labelmap(1) > 0).astype(np.uint8))
    assert res.labels_written == 4
    assert any("1 case(s)" in w and "no label" in w for w in res.warnings)  # unlabelled imagesTs case
    assert load_collection(out).provenance["label_rule"]["default"] == "label > 0"


def test_nnunet_lesion_labels_by_value_name_and_modality(tmp_path):
    src = _nnunet(tmp_path, channels={"0": "FLAIR", "1": "t1gd"}, n_test=0)
    out = tmp_path / "c.json"
    import_nnunet(src, out, dataset="B", lesion_type="tumour", lesion_labels="edema,2",
                  modality_labels={"T1ce": "3"})
    coll = load_collection(out)
    fl = next(c for c in coll if c.id == "B_demo_000_FLAIR")
    ce = next(c for c in coll if c.id == "B_demo_000_T1ce")
    np.testing.assert_array_equal(np.asarray(nib.load(str(fl.label)).dataobj), np.isin(_labelmap(0), (1, 2)))
    np.testing.assert_array_equal(np.asarray(nib.load(str(ce.label)).dataobj), _labelmap(0) == 3)
    with pytest.raises(DataError, match=r"lesion label 'core' is neither an integer nor a label name"):
        import_nnunet(src, tmp_path / "d.json", dataset="B", lesion_type="tumour", lesion_labels="core")


def test_nnunet_ignore_label_is_background(tmp_path):
    src = _nnunet(tmp_path, ignore=True, n_test=0)
    import_nnunet(src, tmp_path / "c.json", dataset="D", lesion_type="tumour")
    c = load_collection(tmp_path / "c.json").cases[0]
    lab = np.asarray(nib.load(str(c.label)).dataobj)
    assert lab[0, 0, 0] == 0 and lab.sum() == (_labelmap(0) > 0).sum()


def test_nnunet_binary_labels_referenced_in_place(tmp_path):
    src = _nnunet(tmp_path, n_test=0)
    for f in (src / "labelsTr").iterdir():
        _nii(f, (np.asarray(nib.load(str(f)).dataobj) > 0).astype(np.uint8))
    res = import_nnunet(src, tmp_path / "c.json", dataset="D", lesion_type="ms", split="test")
    assert res.labels_dir is None and res.labels_written == 0
    assert not (tmp_path / "c_labels").exists()
    assert all(c.label.parent == (src / "labelsTr").resolve() and c.split == "test" for c in res.collection)


def test_nnunet_channel_override_and_skip(tmp_path):
    src = _nnunet(tmp_path, channels={"0": "DWI", "1": "ADC"}, n_test=0)
    with pytest.raises(DataError, match=r"channel 1: unknown modality 'ADC'.*--channel 1=skip"):
        import_nnunet(src, tmp_path / "c.json", dataset="I", lesion_type="stroke_acute")
    res = import_nnunet(src, tmp_path / "c.json", dataset="I", lesion_type="stroke_acute", channels={1: "skip"})
    assert {c.modality for c in res.collection} == {"DWI"} and len(res.collection) == 3


@pytest.mark.parametrize("breakage, message", [
    ("no_label", r"case 'demo_001' has no label"),
    ("no_channel", r"case 'demo_002' .* has no file for channel\(s\) 0001"),
    ("shape", r"case 'D_demo_000_FLAIR': label shape \(6, 7, 5\) differs from image shape \(6, 7, 4\)"),
    ("float_label", r"case 'D_demo_001_FLAIR': label .* has non-integer values \(0, 0.5, 1\)"),
    ("lesion_type", r"lesion type 'glioma' is not one of"),
])
def test_nnunet_bad_inputs_write_nothing(tmp_path, breakage, message):
    src = _nnunet(tmp_path, n_test=0)
    lesion_type = "tumour"
    if breakage == "no_label":
        (src / "labelsTr" / "demo_001.nii.gz").unlink()
    elif breakage == "no_channel":
        (src / "imagesTr" / "demo_002_0001.nii.gz").unlink()
    elif breakage == "shape":
        _nii(src / "imagesTr" / "demo_000_0000.nii.gz", np.ones((6, 7, 4), np.float32))
    elif breakage == "float_label":
        lab = np.zeros(SHAPE, np.float32)
        lab[1, 1, 1], lab[2, 2, 2] = 0.5, 1.0
        _nii(src / "labelsTr" / "demo_001.nii.gz", lab)
    elif breakage == "lesion_type":
        lesion_type = "glioma"
    out = tmp_path / "out" / "collection.json"
    (tmp_path / "out").mkdir()
    with pytest.raises(DataError, match=message):
        import_nnunet(src, out, dataset="D", lesion_type=lesion_type)
    _nothing_written(out)


def test_existing_output_needs_overwrite(tmp_path):
    src = _nnunet(tmp_path, n_test=0)
    out = tmp_path / "c.json"
    import_nnunet(src, out, dataset="D", lesion_type="tumour")
    before = out.read_text()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        import_nnunet(src, out, dataset="E", lesion_type="tumour")
    assert out.read_text() == before
    import_nnunet(src, out, dataset="E", lesion_type="tumour", overwrite=True)
    assert load_collection(out).cases[0].dataset == "E"
    assert len(list((tmp_path / "c_labels").glob("*.nii.gz"))) == 3


def _folder(root):
    rng = np.random.default_rng(2)
    for s in ("p1", "p2"):
        for name in ("t1", "FLAIR"):
            _nii(root / s / f"{name}.nii.gz", rng.random(SHAPE).astype(np.float32))
        _nii(root / s / "label.nii.gz", (_labelmap(0) > 0).astype(np.uint8))
    return root


def test_folder_import(tmp_path):
    src = _folder(tmp_path / "src")
    res = import_folder(src, tmp_path / "c.json", dataset="F", lesion_type="wmh", split="test")
    coll = validate_collection(load_collection(tmp_path / "c.json"))
    assert sorted(c.id for c in coll) == ["F_p1_FLAIR", "F_p1_T1", "F_p2_FLAIR", "F_p2_T1"]
    assert all(c.split == "test" for c in coll) and res.labels_written == 0
    # one subject folder on its own
    res = import_folder(src / "p1", tmp_path / "one.json", dataset="F", lesion_type="wmh")
    assert len(res.collection) == 2


def test_folder_import_errors(tmp_path):
    src = _folder(tmp_path / "src")
    _nii(src / "p2" / "adc.nii.gz", np.ones(SHAPE, np.float32))
    with pytest.raises(DataError, match=r"subject 'p2': unknown modality 'adc'.*--ignore adc"):
        import_folder(src, tmp_path / "c.json", dataset="F", lesion_type="wmh")
    _nothing_written(tmp_path / "c.json")
    assert len(import_folder(src, tmp_path / "c.json", dataset="F", lesion_type="wmh", ignore=["ADC"]).collection) == 4
    (src / "p1" / "label.nii.gz").unlink()
    with pytest.raises(DataError, match=r"subject 'p1' has no label file label.nii.gz"):
        import_folder(src, tmp_path / "d.json", dataset="F", lesion_type="wmh", ignore=["adc"])


def test_csv_import(tmp_path):
    src = _folder(tmp_path / "src")
    lab = _labelmap(0)
    _nii(src / "p2" / "seg.nii.gz", lab)
    (tmp_path / "cases.csv").write_text(
        "image,label,modality,dataset,split,seen\n"
        "src/p1/t1.nii.gz,src/p1/label.nii.gz,T1,A,train,\n"
        "src/p2/FLAIR.nii.gz,src/p2/seg.nii.gz,flair,B,test,no\n")
    res = import_csv(tmp_path / "cases.csv", tmp_path / "c.json", lesion_type="ms", lesion_labels="2,3")
    coll = validate_collection(load_collection(tmp_path / "c.json"))
    b = next(c for c in coll if c.dataset == "B")
    assert (b.modality, b.split, b.seen) == ("FLAIR", "test", False)
    assert np.asarray(nib.load(str(b.label)).dataobj).sum() == np.isin(lab, (2, 3)).sum()
    assert res.labels_written == 2  # the 0/1 label loses its lesion under rule {2, 3}: rewritten too
    (tmp_path / "bad.csv").write_text("image,modality\nx.nii.gz,T1\n")
    with pytest.raises(DataError, match="lacks column"):
        import_csv(tmp_path / "bad.csv", tmp_path / "d.json", dataset="A", lesion_type="ms")


def test_cli_import_nnunet(tmp_path, monkeypatch, capsys):
    src = _nnunet(tmp_path, channels={"0": "DWI", "1": "ADC"}, n_test=0)
    out = tmp_path / "c.json"
    monkeypatch.setenv("MOME_TCMALLOC", "0")  # run() may otherwise re-exec the interpreter (pytest!)
    monkeypatch.setattr(sys, "argv", ["mome", "collection", "import", "nnunet", str(src), "--out", str(out),
                                      "--dataset", "ISLES", "--lesion-type", "stroke_acute", "--unseen",
                                      "--channel", "1=skip", "--lesion-labels", "1"])
    with pytest.raises(SystemExit) as exc:
        cli_main.run()
    captured = capsys.readouterr()
    assert exc.value.code in (0, None), captured.err
    assert "3 cases" in captured.out and "3 reduced labels" in captured.out
    assert {(c.modality, c.seen) for c in load_collection(out)} == {("DWI", False)}
    monkeypatch.setattr(sys, "argv", ["mome", "collection", "import", "nnunet", str(src), "--out", str(out),
                                      "--dataset", "ISLES", "--lesion-type", "stroke_acute"])
    with pytest.raises(SystemExit) as exc:
        cli_main.run()
    assert exc.value.code == 1
    assert capsys.readouterr().err.strip() == f"mome: error: output {out} already exists; pass --overwrite to replace it"
