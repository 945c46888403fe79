"""Signals, write failures and bugs: one line, the documented exit status, no partial output."""

from __future__ import annotations

import errno
import os
import signal

import nibabel as nib
import numpy as np
import pytest

from bad_inputs import brain, nii
from reliability_helpers import run_cli, snapshot


def _predict_args(work, model):
    nii(work / "scan.nii.gz", brain())
    return ["predict", "-i", work / "scan.nii.gz", "-o", work / "out" / "mask.nii.gz", "--model", model,
            "--device", "cpu", "--probabilities", "--stats"]


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("sig, code, words", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "interrupted")])
def test_signal_during_a_write_leaves_nothing(sig, code, words, tmp_path, tiny_model, monkeypatch, capsys):
    """The signal arrives while the probability map is half written (the mask is done): the temporary,
    the finished mask and the folder created for them are all removed."""
    args = _predict_args(tmp_path, tiny_model)
    before = snapshot(tmp_path)
    # a background shell starts pytest with SIGINT ignored, and mome leaves an ignored signal ignored:
    # give the run an interactive shell's default handlers
    previous = {s: signal.signal(s, d) for s, d in ((signal.SIGINT, signal.default_int_handler),
                                                   (signal.SIGTERM, signal.SIG_DFL))}
    real_save = nib.save
    calls = []

    def save_then_signal(img, path):
        real_save(img, path)
        calls.append(path)
        if len(calls) == 2:  # the probabilities' temporary exists now, full size
            os.kill(os.getpid(), sig)

    monkeypatch.setattr(nib, "save", save_then_signal)
    try:
        got, out, err = run_cli(monkeypatch, capsys, *args)
        # the caller's handlers are back
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    assert got == code and words in _one_line(err)
    assert len(calls) == 2 and snapshot(tmp_path) == before


@pytest.mark.parametrize("err_no, words", [(errno.ENOSPC, "no space left"), (errno.EROFS, "Read-only file system"),
                                           (errno.EACCES, "Permission denied")])
def test_a_failing_write_is_one_line(err_no, words, tmp_path, tiny_model, monkeypatch, capsys):
    args = _predict_args(tmp_path, tiny_model)
    before = snapshot(tmp_path)

    def fail(*_a, **_k):
        raise OSError(err_no, os.strerror(err_no))

    monkeypatch.setattr("mome.utils.atomic.os.replace", fail)
    code, out, err = run_cli(monkeypatch, capsys, *args)
    line = _one_line(err)
    assert code == 1 and line.startswith("mome: error: ") and words in line and "mask.nii.gz" in line
    assert snapshot(tmp_path) == before


def test_a_bug_is_one_line_and_debug_shows_the_traceback(tmp_path, tiny_model, monkeypatch, capsys):
    args = _predict_args(tmp_path, tiny_model)

    def bug(*_a, **_k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("mome.inference.api.predict", bug)
    code, out, err = run_cli(monkeypatch, capsys, *args)
    line = _one_line(err)
    assert code == 70 and line.startswith("mome: internal error: ZeroDivisionError") and "--debug" in line
    code, out, err = run_cli(monkeypatch, capsys, "--debug", *args)
    assert code == 70 and "Traceback" in err and "ZeroDivisionError" in err


def test_overwrite_replaces_mome_s_own_folder(tmp_path, monkeypatch, capsys):
    out = tmp_path / "synth"
    assert run_cli(monkeypatch, capsys, "synth", "--preset", "tiny", "--out", out, "--seed", "0")[0] == 0
    assert (out / ".mome-output").is_file()
    code, _, err = run_cli(monkeypatch, capsys, "synth", "--preset", "tiny", "--out", out, "--seed", "1", "--overwrite")
    assert code == 0, err


def test_a_training_run_that_fails_before_its_first_epoch_leaves_no_run_folder(tmp_path, monkeypatch, capsys):
    """Headers are fine, the voxels are not (NaN): found by the data loader after the run folder exists."""
    (tmp_path / "d").mkdir()
    cases = []
    for i in range(2):
        img = brain(seed=i)
        if i == 1:
            img[4, 4, 4] = np.nan
        nii(tmp_path / "d" / f"c{i}.nii.gz", img)
        nii(tmp_path / "d" / f"l{i}.nii.gz", (brain(seed=i) > 250).astype(np.uint8))
        cases.append({"id": f"c{i}", "image": f"d/c{i}.nii.gz", "label": f"d/l{i}.nii.gz", "modality": "T1",
                      "dataset": "D", "lesion_type": "tumour", "split": "train"})
    import json

    (tmp_path / "collection.json").write_text(json.dumps({"name": "nan", "cases": cases}))
    before = snapshot(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "train", "experts", "--collection", tmp_path / "collection.json",
                             "--preset", "tiny", "--out", tmp_path / "run", "--epochs", "1", "--iterations", "1",
                             "--modalities", "T1", "--no-progress")
    # training reports its progress on stderr; the error is its one last line
    assert code == 1 and err.count("mome: error") == 1 and "Traceback" not in err
    assert "NaN" in err.strip().splitlines()[-1]
    assert snapshot(tmp_path) == before


def test_an_ignored_signal_stays_ignored():
    """nohup and background shells ignore SIGINT: the CLI does not make such a run interruptible."""
    from mome.utils import signals

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with signals.handled():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is signals._on_sigterm
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
