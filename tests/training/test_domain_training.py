"""Training batches drawn from the domain-randomised generator, and the CLI's checks of its folders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

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


def test_generated_volumes_know_their_tissue_and_batches_carry_it_aligned():
    from mome.data.domain.generator import TISSUE_CLASSES
    from mome.data.domain.label_maps import TISSUE_GROUPS

    gen = DomainGenerator([_toy_label_map()], _toy_bank(), spacing_mm=2.0)
    case = gen.sample(np.random.default_rng(4), "T2")
    assert case.tissue is not None and case.tissue.shape == case.label.shape
    assert np.all(case.tissue[case.label != 0] == 0)  # outside the mask and in the lesion: unknown
    # the toy map's white matter, cortex and ventricles are classes wm, cortex and csf (where not altered)
    known = set(np.unique(case.tissue[case.tissue > 0]).tolist())
    assert known <= {TISSUE_CLASSES.index(g) + 1 for g in ("wm", "cortex", "csf")} and len(known) == 3
    assert list(TISSUE_CLASSES) == list(TISSUE_GROUPS)

    scales = deep_supervision_scales([[1, 1, 1], [2, 2, 2], [2, 2, 2]])
    batches = PatchBatches([], ["T2"], [32, 32, 32], 2, scales, seed=1, generator=gen, generated_fraction=1.0,
                           tissue=True, augmentation=False)
    plain = PatchBatches([], ["T2"], [32, 32, 32], 2, scales, seed=1, generator=gen, generated_fraction=1.0,
                         augmentation=False)
    a, b = batches[(0, 0)], plain[(0, 0)]
    assert a["tissue"].shape == (2, 1, 32, 32, 32) and "tissue" not in b
    assert (a["image"] == b["image"]).all()  # the tissue channel changes nothing else
    assert all((x == y).all() for x, y in zip(a["target"], b["target"]))
    assert all(t.shape[1] == 1 for t in a["target"])
    # unknown outside the brain (image 0 there after masking); a known class wherever the image is inside
    # white matter far from every edge is checked through the image: each class has one intensity level
    assert (a["tissue"][a["image"] == 0] == 0).float().mean() > 0.99
    assert int(a["tissue"].max()) <= len(TISSUE_CLASSES) and (a["tissue"] > 0).any()
    # augmented: still whole classes, aligned with the lesion label (no tissue where the lesion is)
    aug = PatchBatches([], ["T2"], [32, 32, 32], 2, scales, seed=2, generator=gen, generated_fraction=1.0,
                       tissue=True)
    c = aug[(0, 0)]
    assert set(torch.unique(c["tissue"]).tolist()) <= set(range(len(TISSUE_CLASSES) + 1))
    assert not ((c["target"][0] == 1) & (c["tissue"] > 0)).any()


def test_tissue_head_trains_beside_the_network_and_leaves_it_unchanged():
    from mome.model.config import UNetConfig
    from mome.model.experts import ExpertUNet
    from mome.training.module import TrainingModule
    from mome.training.objectives import SegmentationObjective, tissue_loss

    torch.manual_seed(0)
    unet = UNetConfig(features_per_stage=[4, 8, 16], strides=[1, 2, 2], kernel_sizes=[3, 3, 3],
                      n_conv_per_stage=[1, 1, 1], n_conv_per_stage_decoder=[1, 1])
    network = ExpertUNet(unet)
    keys = set(network.state_dict())
    config = TrainConfig(label_maps="x", domain_fraction=0.5, tissue_weight=0.5, epochs=2)
    objective = SegmentationObjective(config, 2)
    module = TrainingModule(network, objective, config)
    assert set(network.state_dict()) == keys  # the head is not part of the saved network
    assert objective.monitor == "loss_seg" and objective.term_names == ("loss", "loss_seg", "loss_tissue")
    tissue = torch.randint(0, 7, (2, 1, 16, 16, 16), dtype=torch.int16)
    batch = {"image": torch.randn(2, 1, 16, 16, 16), "tissue": tissue,
             "target": [torch.randint(0, 2, (2, 1, 16, 16, 16), dtype=torch.int16),
                        torch.randint(0, 2, (2, 1, 8, 8, 8), dtype=torch.int16)]}
    result = objective.step(network, batch, 0, 2)
    assert torch.allclose(result.loss, result.terms["loss_seg"] + 0.5 * result.terms["loss_tissue"])
    result.loss.backward()
    head = module.auxiliary.conv.weight
    assert head.grad is not None and head.grad.abs().sum() > 0
    optimized = {id(p) for group in module.configure_optimizers()["optimizer"].param_groups for p in group["params"]}
    assert id(head) in optimized
    # unknown voxels do not count; a batch without known tissue gives 0 (not NaN)
    logits = torch.randn(1, 6, 4, 4, 4, requires_grad=True)
    none = tissue_loss(logits, torch.zeros(1, 1, 4, 4, 4, dtype=torch.int16))
    assert float(none.detach()) == 0.0
    one = torch.zeros(1, 1, 4, 4, 4, dtype=torch.int16)
    one[0, 0, 0, 0, 0] = 3
    expected = torch.nn.functional.cross_entropy(logits[:, :, 0, 0, 0], torch.tensor([2]))
    assert torch.allclose(tissue_loss(logits, one), expected, atol=1e-6)


def test_tissue_weight_is_checked():
    with pytest.raises(ConfigError, match="needs generated patches"):
        TrainConfig(tissue_weight=1.0)
    with pytest.raises(ConfigError, match=r"tissue_weight must be in"):
        TrainConfig(label_maps="x", domain_fraction=0.5, tissue_weight=-1)
    with pytest.raises(ConfigError, match="gradient_checkpointing"):
        TrainConfig(label_maps="x", domain_fraction=0.5, tissue_weight=1, gradient_checkpointing=True)
