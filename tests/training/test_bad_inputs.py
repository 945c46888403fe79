"""Clear errors for bad inputs, from the library and from the CLI (one line, exit code 1)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from mome.data.collection import Collection
from mome.errors import CheckpointError, ConfigError, DataError, OutputExistsError
from mome.training.stages import train_system
from mome.training.systems import SystemOptions

FEW = {"epochs": 1, "iterations_per_epoch": 1}


def _train(name, collection, out, **kw):
    return train_system(name, collection, out, preset="tiny", overrides=kw.pop("overrides", FEW), progress=False,
                        log=lambda m: None, **kw)


def test_empty_collection(tmp_path):
    with pytest.raises(DataError, match="no cases"):
        _train("experts", Collection("empty", []), tmp_path / "out")
    (tmp_path / "c.json").write_text(json.dumps({"name": "empty", "cases": []}))
    with pytest.raises(DataError, match="no cases"):
        _train("single", tmp_path / "c.json", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_modality_without_training_case(tmp_path):
    from training_helpers import make_collection

    coll = make_collection(tmp_path / "data", modalities=("T1", "T2", "T1ce", "FLAIR"), n_train=1, n_test=0)
    with pytest.raises(DataError, match="modality DWI.*--modalities"):
        _train("experts", coll, tmp_path / "out")
    with pytest.raises(DataError, match="DWI"):
        _train("random-experts", coll, tmp_path / "out")
    out = _train("experts", coll, tmp_path / "out", model_overrides={"modalities": "T1,FLAIR"})
    assert json.loads((out / "run.json").read_text())["members"] == ["experts/T1", "experts/FLAIR"]


def test_missing_or_wrong_experts(tmp_path, collection_path, experts_run):
    with pytest.raises(ConfigError, match="--experts"):
        _train("mome", collection_path, tmp_path / "m")
    with pytest.raises(CheckpointError, match="not a training run"):
        _train("mome", collection_path, tmp_path / "m", options=SystemOptions(experts=str(tmp_path)))
    broken = tmp_path / "broken"
    shutil.copytree(experts_run, broken)
    shutil.rmtree(broken / "experts" / "T2" / "final")
    with pytest.raises(CheckpointError, match="expert checkpoint for T2"):
        _train("mome", collection_path, tmp_path / "m", options=SystemOptions(experts=str(broken)))
    with pytest.raises(CheckpointError, match="not stage-1 experts"):
        single = _train("single", collection_path, tmp_path / "single")
        _train("mome", collection_path, tmp_path / "m", options=SystemOptions(experts=str(single)))


def test_finished_run_is_refused_without_overwrite(tmp_path, collection_path):
    out = _train("single", collection_path, tmp_path / "run")
    before = (out / "final" / "model.safetensors").read_bytes()
    with pytest.raises(OutputExistsError, match="finished training run.*--overwrite"):
        _train("single", collection_path, out)
    assert (out / "final" / "model.safetensors").read_bytes() == before
    _train("single", collection_path, out, overwrite=True, overrides={**FEW, "seed": 1})
    assert json.loads((out / "run.json").read_text())["train_config"]["seed"] == 1


def test_unfinished_run_with_other_config_and_foreign_folder(tmp_path, collection_path):
    out = _train("single", collection_path, tmp_path / "run")
    record = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**record, "finished": False}))
    with pytest.raises(ConfigError, match="different configuration.*train_config.epochs"):
        _train("single", collection_path, out, overrides={"epochs": 2, "iterations_per_epoch": 1})
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not a mome training run"):
        _train("single", collection_path, foreign)


def test_bad_patch_size_names_the_divisor(tmp_path, collection_path):
    with pytest.raises(ConfigError, match="divisor"):
        _train("single", collection_path, tmp_path / "p", overrides={**FEW, "patch_size": [18, 16, 16]})


def test_cli_reports_one_line_errors(tmp_path, collection_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "mome.cli.main", "train", *args], capture_output=True, text=True,
                              timeout=300)

    r = cli("mome", "--collection", str(collection_path), "--out", str(tmp_path / "x"), "--preset", "tiny")
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "mome: error: system 'mome' starts from stage-1 experts: pass --experts RUN (the output folder of "
        "`mome train experts`)"]
    r = cli("system", "nope", "--collection", str(collection_path), "--out", str(tmp_path / "x"))
    assert r.returncode == 1 and "unknown system 'nope'" in r.stderr and "task-specific" in r.stderr
