"""Run-folder fingerprints: a field added after a run was started does not block resuming it at its default."""

from __future__ import annotations

import json

import pytest

from mome.errors import ConfigError
from mome.training.config import TrainConfig
from mome.training.run_folder import CHECKPOINT, differences, field_defaults, member_state
from mome.training.stages import train_system

FEW = {"epochs": 1, "iterations_per_epoch": 1}


def test_differences_ignore_a_missing_key_only_at_its_default():
    old = {"train_config": {"epochs": 2}}
    defaults = {"train_config": {"domain_random_contrast": 0.15, "patch_size": [16, 16, 16]}}
    at_default = {"train_config": {"epochs": 2, "domain_random_contrast": 0.15, "patch_size": (16, 16, 16)}}
    assert differences(old, at_default, defaults) == []
    assert differences(old, at_default) == ["train_config.domain_random_contrast", "train_config.patch_size"]
    changed = {"train_config": {"epochs": 2, "domain_random_contrast": 0.5, "patch_size": [16, 16, 16]}}
    assert differences(old, changed, defaults) == ["train_config.domain_random_contrast"]
    # a key the new record lost, or a recorded value that changed, is always a difference
    assert differences({"train_config": {"epochs": 2, "gone": 1}}, {"train_config": {"epochs": 2}}, defaults) == [
        "train_config.gone"]
    assert differences(old, {"train_config": {"epochs": 3}}, defaults) == ["train_config.epochs"]


def test_field_defaults_of_the_train_config():
    d = field_defaults(TrainConfig)
    assert d["domain_random_contrast"] == TrainConfig().domain_random_contrast
    assert set(d) == set(TrainConfig().to_dict())


def _drop(path, key):
    record = json.loads(path.read_text())
    del record["fingerprint"]["train_config"][key]
    record["finished"] = False
    path.write_text(json.dumps(record))


def test_an_unfinished_run_from_an_older_mome_resumes(tmp_path, collection_path):
    out = train_system("single", collection_path, tmp_path / "run", preset="tiny", overrides=FEW, progress=False,
                       log=lambda m: None)
    # as written by a mome before `domain_random_contrast` existed, stopped after its first epoch
    _drop(out / "run.json", "domain_random_contrast")
    _drop(out / "run_config.json", "domain_random_contrast")
    (out / "status.json").unlink()
    assert (out / CHECKPOINT).is_file()
    fingerprint = json.loads((out / "run_config.json").read_text())["fingerprint"]
    fingerprint["train_config"]["domain_random_contrast"] = TrainConfig().domain_random_contrast
    defaults = {"train_config": field_defaults(TrainConfig)}
    assert member_state(out, fingerprint) == "fresh"
    assert member_state(out, fingerprint, defaults) == "resume"
    logs = []
    train_system("single", collection_path, out, preset="tiny", overrides=FEW, progress=False, log=logs.append)
    assert any("resuming" in m for m in logs), logs
    assert json.loads((out / "run.json").read_text())["finished"]
    # with the new field away from its default it is another configuration
    _drop(out / "run.json", "domain_random_contrast")
    with pytest.raises(ConfigError, match="different configuration.*domain_random_contrast"):
        train_system("single", collection_path, out, preset="tiny", overrides={**FEW, "domain_random_contrast": 0.5},
                     progress=False, log=lambda m: None)
