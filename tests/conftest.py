"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest
import torch

import mome


@pytest.fixture(scope="session")
def tiny_mome_folder(tmp_path_factory):
    """A random-weight tiny MoME saved as a model folder (16^3 patches, 1 mm), for CLI tests."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("shared_models") / "tiny"
    mome.save_model(mome.create_model("tiny"), folder,
                    metadata={"patch_size": [16, 16, 16], "spacing_mm": [1.0, 1.0, 1.0], "modalities": ["T1"]})
    return folder
