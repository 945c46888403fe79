"""SAM-Med3D training with simulated clicks: the objective, the system, benchmark prediction, and that a
trained tiny model segments better after 10 clicks than after 1."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mome.data.collection import load_collection
from mome.inference.clicks import dice, error_regions, interactive_segmentation
from mome.model.baselines import SAMMed3D, sam_med3d_config
from mome.training.config import get_train_config
from mome.training.interactive import SAM_LR, InteractiveObjective, training_click
from mome.training.stages import resolve, train_system
from mome.training.systems import SystemOptions, get_system

SIZE = 16
GRID = np.stack(np.meshgrid(*[np.arange(SIZE)] * 3, indexing="ij"), axis=-1).astype(np.float32)
CENTRES = [np.array(c, np.float32) for c in ((3.5, 7.5, 7.5), (11.5, 4.0, 7.5), (11.5, 11.0, 7.5))]


def three_blobs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Three equally bright blobs; the reference is two of them, so only clicks say which."""
    blobs = [np.linalg.norm(GRID - (c + rng.uniform(-0.7, 0.7, 3)), axis=-1) < 2.3 for c in CENTRES]
    keep = rng.permutation(3)[:2]
    image = 0.3 * rng.standard_normal((SIZE,) * 3) + 1.5 * (blobs[0] | blobs[1] | blobs[2])
    return image.astype(np.float32), blobs[keep[0]] | blobs[keep[1]]


def _batch(rng, n=2):
    images, truths = zip(*[three_blobs(rng) for _ in range(n)])
    return {"image": torch.from_numpy(np.stack(images))[:, None],
            "target": [torch.from_numpy(np.stack(truths))[:, None].to(torch.int16)]}


def _net(seed=0):
    torch.manual_seed(seed)
    return SAMMed3D(sam_med3d_config("tiny"))


def test_objective_step_reaches_every_part_and_repeats_under_a_seed():
    config = get_train_config("tiny", "scratch").replace(seed=4)
    batch = _batch(np.random.default_rng(0))
    losses = []
    for _ in range(2):
        net, objective = _net(), InteractiveObjective(config)
        result = objective.step(net, batch, 0, 2)
        losses.append(float(result.loss.detach()))
    result.loss.backward()
    for name in ("image_encoder.patch_embed.proj.weight", "prompt_encoder.point_embeddings.1.weight",
                 "prompt_encoder.mask_downscaling.0.weight", "mask_decoder.output_hypernetworks_mlps.0.layers.0.weight"):
        assert net.get_parameter(name).grad.abs().sum() > 0, name
    assert losses[0] == losses[1] and np.isfinite(losses[0])
    assert 0 <= float(result.terms["dice_click1"]) <= 1 and result.sums["tp_fp_fn"].shape == (3,)
    # the next step of the same epoch draws other clicks
    assert float(objective.step(net, batch, 0, 2).loss.detach()) != losses[1]


def test_training_click_without_lesion_is_negative():
    point, label = training_click(torch.zeros(4, 4, 4, dtype=torch.bool), torch.zeros(4, 4, 4, dtype=torch.bool),
                                  np.random.default_rng(0))
    assert label == 0 and point.shape == (3,)


def test_optimiser_follows_sam_med3d():
    config = get_train_config("tiny", "scratch").replace(initial_lr=SAM_LR, weight_decay=0.1, epochs=10)
    opt = InteractiveObjective(config).configure_optimizer(_net(), config)
    groups = opt["optimizer"].param_groups
    assert [g["lr"] for g in groups] == pytest.approx([8e-4, 8e-5, 8e-5])
    assert type(opt["optimizer"]).__name__ == "AdamW" and groups[0]["weight_decay"] == 0.1
    assert sorted(opt["lr_scheduler"]["scheduler"].milestones) == [6, 9]


def test_system_defaults(collection_path):
    ctx = resolve(get_system("sam-med3d"), load_collection(collection_path), "cpu", {}, {}, SystemOptions())
    cfg = ctx.config
    assert cfg.patch_size == [64, 64, 64] and cfg.oversample_foreground == 1.0
    assert not cfg.deep_supervision and cfg.grad_clip_scope == "none" and cfg.initial_lr == SAM_LR
    ctx = resolve(get_system("sam-med3d"), load_collection(collection_path), "cpu", {"patch_size": [48, 48, 48]},
                  {}, SystemOptions())
    assert ctx.config.patch_size == [48, 48, 48]  # the user's override wins


def test_train_and_predict_through_the_benchmark(tmp_path, collection_path):
    from mome.benchmark.predict import SystemPredictor, click_summary, predict_cases
    from mome.weights.store import load_model, read_model_record

    run = tmp_path / "run"
    train_system("sam-med3d", collection_path, run, preset="tiny", overrides={"epochs": 1, "iterations_per_epoch": 2},
                 progress=False, log=lambda m: None)
    assert isinstance(load_model(run / "final"), SAMMed3D)
    assert read_model_record(run / "final")["interactive"] is True
    test = load_collection(collection_path).filter(split="test").cases[:3]
    out = tmp_path / "pred"
    assert predict_cases(SystemPredictor(run, device="cpu", seed=1), test, out) == []
    for case in test:
        assert (out / f"{case.id}.nii.gz").is_file()
        record = json.loads((out / "clicks" / f"{case.id}.json").read_text())
        assert len(record["click_dice"]) == 10 and record["click_rule"] == "ritm" and record["seed"] == 1
    summary = click_summary(out)
    assert summary["images"] == 3 and len(summary["mean_dice_per_click"]) == 10


def test_a_trained_tiny_model_is_better_after_10_clicks_than_after_1():
    """400 steps of the real objective (clicks, loss, mask prompt detached between rounds) on the three-blob
    task, Adam at 3e-3 on every parameter (the recipe's 8e-5 for the decoder learns the clicks too slowly for
    a test). Measured: mean Dice over 8 held-out volumes 0.754 after 1 click, 0.904 after 10 (with the
    gradient chain of the released code instead: 0.733 and 0.739). The bound leaves two thirds of the
    margin for other CPUs' rounding."""
    torch.manual_seed(0)
    net = _net()
    config = get_train_config("tiny", "scratch").replace(seed=0)
    objective = InteractiveObjective(config)
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimiser, [240, 360], 0.1)
    rng = np.random.default_rng(0)
    for _ in range(400):
        result = objective.step(net, _batch(rng), 0, 1)
        optimiser.zero_grad()
        result.loss.backward()
        optimiser.step()
        scheduler.step()
    net.eval()
    rng = np.random.default_rng(123)
    curves = []
    for _ in range(8):
        image, truth = three_blobs(rng)
        truth = torch.from_numpy(truth)
        maps, session = interactive_segmentation(net, torch.from_numpy(image), truth, 10, "ritm", seed=0)
        curves.append([dice(m > 0.5, truth) for m in maps])
        # every click of the evaluation was in the error region left by the previous one, with its sign
        previous = [torch.zeros_like(truth)] + [m > 0.5 for m in maps[:-1]]
        for pred, point, label in zip(previous, session.points[0], session.labels[0]):
            fn, fp = error_regions(pred, truth)
            p = tuple(int(v) for v in point)
            assert (fn[p] and label == 1) or (fp[p] and label == 0)
    curves = np.array(curves)
    first, last = curves[:, 0].mean(), curves[:, -1].mean()
    assert last >= first + 0.05, (first, last, curves.round(3))
