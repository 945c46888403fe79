"""Fixtures shared by every test folder."""

from __future__ import annotations

import os

import pytest
import torch

import mome


@pytest.fixture(autouse=True, scope="session")
def torch_backend_and_private_openvino_cache(tmp_path_factory):
    """Eager PyTorch unless a test asks for OpenVINO (its conversion costs seconds per random-weight
    model: tests/inference/test_backends.py covers that path), and an OpenVINO cache of the session's own."""
    saved = {k: os.environ.get(k) for k in ("MOME_BACKEND", "MOME_OPENVINO_CACHE")}
    os.environ["MOME_BACKEND"] = "torch"
    os.environ["MOME_OPENVINO_CACHE"] = str(tmp_path_factory.mktemp("openvino_cache"))
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def tiny_mome_folder(tmp_path_factory):
    """A random-weight tiny MoME saved as a model folder (16^3 patches, 1 mm), for CLI tests."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("shared_models") / "tiny"
    mome.save_model(mome.create_model("tiny"), folder,
                    metadata={"patch_size": [16, 16, 16], "spacing_mm": [1.0, 1.0, 1.0], "modalities": ["T1"]})
    return folder
