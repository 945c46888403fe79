"""Fixtures for inference tests: a tiny saved model and a registry that is restored after each test."""

from __future__ import annotations

import pytest
import torch

import mome
from mome.weights import registry


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A random-weight tiny MoME saved with training metadata (16^3 patches, 1 mm)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("models") / "tiny"
    mome.save_model(mome.create_model("tiny"), folder,
                    metadata={"patch_size": [16, 16, 16], "spacing_mm": [1.0, 1.0, 1.0], "modalities": ["T1"]})
    return folder


@pytest.fixture
def clean_registry():
    """Restore the pretrained-model registry after a test that registers entries."""
    saved = dict(registry._REGISTRY)
    yield registry
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny networks run fastest on one thread; several threads on a shared 2-core machine spin-wait
    (measured: 0.16 s vs 1-8 s per tiny prediction). Restored after each module."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
