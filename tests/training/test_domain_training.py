"""Training batches drawn from the domain-randomised generator, and the CLI's checks of its folders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from test_domain_generator import _toy_bank, _toy_label_map  # noqa: E402

from mome.data.domain.generator import DomainGenerator  # noqa: E402
from mome.errors import ConfigError  # noqa: E402
from mome.training.augment import deep_supervision_scales  # noqa: E402
from mome.training.config import TrainConfig  # noqa: E402
from mome.training.sampling import PatchBatches  # noqa: E402


def test_generated_batches_are_reproducible_and_mixed_with_collection_cases():
    gen = DomainGenerator([_toy_label_map()], _toy_bank(), spacing_mm=2.0)
    scales = deep_supervision_scales([[1, 1, 1], [2, 2, 2], [2, 2, 2]])
    batches = PatchBatches([], ["FLAIR", "T2"], [32, 32, 32], 2, scales, seed=3, generator=gen,
                           generated_fraction=1.0)
    a, b = batches[(0, 0)], batches[(0, 0)]
    assert a["image"].shape == (2, 1, 32, 32, 32) and len(a["target"]) == len(scales)
    assert all(m in ("FLAIR", "T2") for m in a["modality_name"])
    assert all(d.startswith("domain_") for d in a["dataset"])
    assert (a["image"] == b["image"]).all()  # the same (epoch, index) gives the same batch
    assert not (batches[(0, 1)]["image"] == a["image"]).all()


def test_domain_options_are_checked():
    with pytest.raises(ConfigError, match="needs label_maps"):
        TrainConfig(domain_fraction=0.5)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        TrainConfig(label_maps="x", domain_fraction=1.5)
    with pytest.raises(ConfigError, match=r"domain_random_contrast must be in \[0, 1\]"):
        TrainConfig(label_maps="x", domain_fraction=0.5, domain_random_contrast=-0.1)


def test_cli_refuses_bad_label_map_folders_before_training(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((6, 6, 6)).astype(np.float32), np.eye(4)),
             str(images / "t1.nii.gz"))
    (tmp_path / "c.json").write_text('{"name": "x", "cases": []}')

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "mome.cli.main", "train", "experts", "--collection",
                               str(tmp_path / "c.json"), "--out", str(tmp_path / "run"), *args],
                              capture_output=True, text=True, timeout=300)

    r = cli("--label-maps", str(images))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "looks like an image" in r.stderr
    r = cli("--label-maps", str(tmp_path / "absent"))
    assert r.returncode == 1 and "does not exist" in r.stderr
    r = cli("--lesion-masks", str(tmp_path))
    assert r.returncode == 1 and "need --label-maps" in r.stderr
    r = cli("--domain-random-contrast", "0")
    assert r.returncode == 1 and "need --label-maps" in r.stderr
    assert not (tmp_path / "run").exists()
