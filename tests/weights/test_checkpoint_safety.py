"""nnU-Net checkpoints are read without executing anything: tampered, truncated or foreign files are refused."""

from __future__ import annotations

import argparse
import os
import pickle

import numpy as np
import pytest
import torch

from mome.errors import CheckpointError
from mome.weights.nnunet_checkpoint import SAFE_GLOBALS, load_nnunet_checkpoint, strip_wrapper_prefixes
from mome.weights.official import import_official

from nnunet_fixtures import SMALL, nnunet_checkpoint, nnunet_plans, plain_conv_unet, save_checkpoint, \
    write_official_mome


class _Payload:
    """Unpickling this runs ``os.system("touch MARKER")``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


@pytest.fixture(scope="module")
def genuine(tmp_path_factory):
    """A genuine expert checkpoint (NumPy 1.x global names, as the authors' files) and its bytes."""
    path = tmp_path_factory.mktemp("ck") / "checkpoint_best1.pth"
    net = plain_conv_unet(1, 2, seed=3, **SMALL)
    save_checkpoint(nnunet_checkpoint(net, nnunet_plans(**SMALL), "3d_fullres", "module."), path, numpy1_names=True)
    return path


def test_genuine_checkpoint_loads_with_numpy_scalars_and_no_global_side_effect(genuine):
    before = set(torch.serialization.get_safe_globals())
    ckpt = load_nnunet_checkpoint(genuine)
    assert isinstance(ckpt["_best_ema"], np.float64) and ckpt["_best_ema"] == 0.7
    assert isinstance(ckpt["logging"]["train_losses"][0], np.float32)
    assert ckpt["init_args"]["device"] == torch.device("cuda")
    assert ckpt["inference_allowed_mirroring_axes"] == (0, 1, 2)
    assert all(k.startswith("module.") for k in ckpt["network_weights"])
    leaked = (set(torch.serialization.get_safe_globals()) & set(SAFE_GLOBALS)) - before
    assert not leaked  # our allow-list is scoped to our load
    assert b"numpy.core.multiarray\nscalar" in _data_pkl(genuine)  # written as NumPy 1.x names it


@pytest.mark.parametrize("container", ["torch_zip", "raw_pickle"])
def test_tampered_checkpoint_is_refused_without_running_its_code(genuine, tmp_path, container):
    marker = tmp_path / "pwned"
    ckpt = load_nnunet_checkpoint(genuine)
    ckpt["logging"]["note"] = _Payload(marker)
    bad = tmp_path / "checkpoint_best.pth"
    if container == "torch_zip":
        torch.save(ckpt, bad)
    else:
        # a plain pickle (legacy, non-zip torch format) of a checkpoint-like dict
        bad.write_bytes(pickle.dumps({"trainer_name": "nnUNetTrainer", "_best_ema": _Payload(marker)}, protocol=2))
    with pytest.raises(CheckpointError, match=r"(?s)refusing to load.*system.*tampered.*Nothing from it was executed"):
        load_nnunet_checkpoint(bad)
    assert not marker.exists()
    # the payload is live: an unsafe load runs it (this is what the allow-list prevents)
    live = tmp_path / "live"
    ckpt["logging"]["note"] = _Payload(live)
    torch.save(ckpt, bad)
    torch.load(bad, weights_only=False)
    assert live.exists()


def test_objects_outside_the_allow_list_are_refused(genuine, tmp_path):
    ckpt = load_nnunet_checkpoint(genuine)
    ckpt["init_args"]["extra"] = argparse.Namespace(a=1)  # harmless, but no nnU-Net checkpoint has one
    bad = tmp_path / "c.pth"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match="argparse.Namespace"):
        load_nnunet_checkpoint(bad)


@pytest.mark.parametrize("keep", [0.5, 0.97, 0.0])
def test_truncated_checkpoint_is_refused(genuine, tmp_path, keep):
    data = genuine.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_nnunet_checkpoint(cut)


@pytest.mark.parametrize("content", [b"this is not a checkpoint\n" * 40, bytes(range(256)) * 8, b"PK\x03\x04garbage"])
def test_file_that_is_not_a_checkpoint_is_refused(tmp_path, content):
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(path)):
        load_nnunet_checkpoint(path)


def test_missing_file_and_missing_network_weights(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_nnunet_checkpoint(tmp_path / "nope.pth")
    path = tmp_path / "no_weights.pth"
    torch.save({"init_args": {"configuration": "3d_fullres"}, "trainer_name": "nnUNetTrainer"}, path)
    with pytest.raises(CheckpointError, match="no 'network_weights'"):
        load_nnunet_checkpoint(path)
    torch.save(plain_conv_unet(1, 2, seed=0, **SMALL).state_dict(), path)
    with pytest.raises(CheckpointError, match="bare state dict"):
        load_nnunet_checkpoint(path)
    torch.save({"network_weights": {"a": 1.0}}, path)
    with pytest.raises(CheckpointError, match="non-tensor"):
        load_nnunet_checkpoint(path)


def test_import_stops_at_a_tampered_expert_and_writes_nothing(tmp_path):
    write_official_mome(tmp_path / "ck")
    marker = tmp_path / "pwned"
    ckpt = load_nnunet_checkpoint(tmp_path / "ck" / "checkpoint_best3.pth")
    ckpt["_best_ema"] = _Payload(marker)
    torch.save(ckpt, tmp_path / "ck" / "checkpoint_best3.pth")
    with pytest.raises(CheckpointError, match="checkpoint_best3.pth"):
        import_official(tmp_path / "ck", tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temporary left behind


def test_wrapper_prefixes_are_stripped_in_any_nesting():
    t = torch.zeros(1)
    state = {"module._orig_mod.encoder.w": t, "_orig_mod.decoder.w": t, "module.seg.w": t, "plain.w": t}
    assert set(strip_wrapper_prefixes(state)) == {"encoder.w", "decoder.w", "seg.w", "plain.w"}
    with pytest.raises(CheckpointError, match="collides"):
        strip_wrapper_prefixes({"module.a": t, "a": t})


def _data_pkl(path) -> bytes:
    import zipfile

    with zipfile.ZipFile(path) as zf:
        return b"".join(zf.read(n) for n in zf.namelist() if n.endswith("data.pkl"))
