"""Shared fixtures: a tiny 5-modality collection and a finished tiny stage-1 run (built once per session)."""

from __future__ import annotations

import pytest
import torch

from training_helpers import make_collection


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    # the CI machines have 2 shared cores: one thread per process avoids OpenMP oversubscription stalls
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def collection_path(tmp_path_factory):
    """Five modalities x two datasets, 2 training + 1 test subject each, 24^3 voxels at 2 mm."""
    return make_collection(tmp_path_factory.mktemp("fixture"), datasets=("DS1", "DS2"), n_train=2, n_test=1)


@pytest.fixture(scope="session")
def experts_run(tmp_path_factory, collection_path):
    """A finished stage-1 run (tiny preset, 3 epochs x 4 iterations per expert)."""
    from mome.training.stages import train_system

    out = tmp_path_factory.mktemp("runs") / "experts"
    train_system("experts", collection_path, out, preset="tiny", overrides={"epochs": 3, "iterations_per_epoch": 4},
                 progress=False, log=lambda m: None)
    return out
