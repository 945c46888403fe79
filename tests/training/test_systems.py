"""Every baseline and ablation trains a few steps from the same code; options change what they say."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

import mome
from mome.model.experts import ExpertUNet
from mome.model.mome import MoME
from mome.training.stages import train_system
from mome.training.systems import SYSTEMS, SystemOptions

FEW = {"epochs": 1, "iterations_per_epoch": 2}


def _train(name, collection, out, experts=None, **kw):
    options = SystemOptions(experts=None if experts is None else str(experts),
                            reinit_expert_heads=kw.pop("reinit", False))
    return train_system(name, collection, out, preset="tiny", overrides={**FEW, **kw.pop("overrides", {})},
                        options=options, progress=False, log=lambda m: None, **kw)


def _run(out):
    return json.loads((out / "run.json").read_text())


@pytest.mark.parametrize("name, gate, curriculum", [("no-curriculum", "hierarchical", False),
                                                   ("basic-gate", "basic", False)])
def test_ablations_from_experts(tmp_path, collection_path, experts_run, name, gate, curriculum):
    out = _train(name, collection_path, tmp_path / name, experts=experts_run)
    run = _run(out)
    assert run["finished"] and run["train_config"]["curriculum"] is curriculum
    assert run["model_config"]["gate_type"] == gate
    model = mome.load_model(out / "final")
    assert isinstance(model, MoME) and model.config.gate_type == gate
    rows = (out / "log.csv").read_text().splitlines()
    assert rows[1].split(",")[rows[0].split(",").index("f")] == "0"


def test_random_experts_needs_no_stage1(tmp_path, collection_path):
    out = _train("random-experts", collection_path, tmp_path / "rnd")
    run = _run(out)
    assert run["model_config"]["gate_type"] == "basic" and not run["train_config"]["curriculum"]
    assert json.loads((out / "run_config.json").read_text())["info"]["experts_from"] == "random initialisation"


def test_single_unet_on_every_seen_training_image(tmp_path, collection_path):
    out = _train("single", collection_path, tmp_path / "single")
    config = json.loads((out / "run_config.json").read_text())
    assert len(config["cases"]) == 20  # 2 datasets x 2 subjects x 5 modalities
    assert isinstance(mome.load_model(out / "final"), ExpertUNet)
    assert _run(out)["train_config"]["initial_lr"] == 1e-2


def test_task_specific_one_unet_per_task_including_unseen(tmp_path):
    from training_helpers import make_collection

    coll = make_collection(tmp_path / "data", modalities=("T1", "FLAIR"), datasets=("A", "U"), n_train=1,
                           n_test=1, unseen=("U",))
    out = _train("task-specific", coll, tmp_path / "ts")
    assert _run(out)["members"] == ["tasks/A_FLAIR", "tasks/A_T1", "tasks/U_FLAIR", "tasks/U_T1"]
    for task in ("A_FLAIR", "U_T1"):
        assert (out / "tasks" / task / "final" / "model.safetensors").is_file()
    config = json.loads((out / "tasks" / "U_T1" / "run_config.json").read_text())
    assert config["cases"] == ["U_train0_T1"] and config["info"]["task"] == "U/T1"


def test_options_gate_activation_balanced_sampling_reinit_heads(tmp_path, collection_path, experts_run):
    out = train_system("mome", collection_path, tmp_path / "opt", overrides={**FEW, "sampling": "task",
                                                                              "grad_clip_scope": "gate"},
                       model_overrides={"gate_activation": "softmax"},
                       options=SystemOptions(experts=str(experts_run), reinit_expert_heads=True),
                       progress=False, log=lambda m: None)
    run = _run(out)
    assert run["model_config"]["gate_activation"] == "softmax" and run["train_config"]["sampling"] == "task"
    assert run["options"]["reinit_expert_heads"] is True
    rows = (out / "log.csv").read_text().splitlines()
    header, values = rows[0].split(","), rows[1].split(",")
    gates = [float(values[header.index(f"gate_{e}_on_T1")]) for e in ("T1", "T2", "T1ce", "FLAIR", "DWI")]
    assert sum(gates) == pytest.approx(1.0, abs=1e-3), "softmax weights sum to 1 over experts"


def test_same_seed_gives_identical_weights(tmp_path, collection_path):
    a = _train("single", collection_path, tmp_path / "a", overrides={"seed": 5})
    # batches are seeded one by one, so DataLoader worker processes change nothing
    b = _train("single", collection_path, tmp_path / "b", overrides={"seed": 5, "num_workers": 2})
    c = _train("single", collection_path, tmp_path / "c", overrides={"seed": 6})
    wa, wb, wc = (load_file(str(o / "final" / "model.safetensors")) for o in (a, b, c))
    assert wa.keys() == wb.keys()
    assert all((wa[k] == wb[k]).all() for k in wa), "same seed (0 or 2 workers), different weights"
    assert any(not (wa[k] == wc[k]).all() for k in wa), "different seeds gave the same weights"


def test_registry_lists_the_papers_systems():
    assert {"experts", "mome", "no-curriculum", "basic-gate", "random-experts", "single",
            "task-specific"} <= set(SYSTEMS)
