"""Losses: deep-supervision weights, DC+CE, curriculum weight and eq. 2 on hand-built batches."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import mome
from mome.training.losses import (CurriculumLoss, DeepSupervisedLoss, DiceCELoss, curriculum_weight,
                                  deep_supervision_weights, select_sample_experts)


def test_curriculum_weight_first_middle_last_epoch():
    assert curriculum_weight(0, 800) == 1.0
    assert curriculum_weight(400, 800) == pytest.approx(0.25)
    assert curriculum_weight(799, 800) == pytest.approx((1 / 800) ** 2)
    assert curriculum_weight(799, 800) < 1e-5
    assert [curriculum_weight(e, 4) for e in range(4)] == pytest.approx([1, 0.5625, 0.25, 0.0625])
    with pytest.raises(ValueError):
        curriculum_weight(0, 0)


def test_curriculum_shape_and_length():
    # defaults are eq. 2 exactly; power 1 decays linearly; span 0.5 reaches 0 halfway and stays there
    assert [curriculum_weight(e, 8, 2.0, 1.0) for e in range(8)] == [curriculum_weight(e, 8) for e in range(8)]
    assert [curriculum_weight(e, 4, power=1.0) for e in range(4)] == pytest.approx([1, 0.75, 0.5, 0.25])
    assert [curriculum_weight(e, 8, span=0.5) for e in range(8)] == pytest.approx(
        [1, 0.5625, 0.25, 0.0625, 0, 0, 0, 0])
    for bad in ({"power": 0.0}, {"span": 0.0}, {"span": 1.5}):
        with pytest.raises(ValueError):
            curriculum_weight(0, 8, **bad)


def test_deep_supervision_weights_are_nnunets():
    w = deep_supervision_weights(5)
    assert w == pytest.approx([1 / 1.875, 0.5 / 1.875, 0.25 / 1.875, 0.125 / 1.875, 0.0])
    assert sum(w) == pytest.approx(1.0)
    assert deep_supervision_weights(1) == [1.0]
    assert deep_supervision_weights(2) == [1.0, 0.0]


def test_dice_ce_matches_hand_computation():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 4, 4, 4)
    target = (torch.rand(2, 1, 4, 4, 4) > 0.6).long()
    prob = torch.softmax(logits, 1)[:, 1]
    truth = target[:, 0].float()
    inter = (prob * truth).sum(dim=(1, 2, 3))
    dice = (2 * inter + 1e-5) / (prob.sum(dim=(1, 2, 3)) + truth.sum(dim=(1, 2, 3)) + 1e-5)
    expected = F.cross_entropy(logits, target[:, 0]) + (1 - dice).mean()  # per-sample Dice, then mean
    assert DiceCELoss()(logits, target).item() == pytest.approx(expected.item(), rel=1e-5)
    batch_dice = (2 * inter.sum() + 1e-5) / (prob.sum() + truth.sum() + 1e-5)
    expected_batch = F.cross_entropy(logits, target[:, 0]) + 1 - batch_dice
    assert DiceCELoss(batch_dice=True)(logits, target).item() == pytest.approx(expected_batch.item(), rel=1e-5)
    ce_only = DiceCELoss(dice_weight=0.0)(logits, target).item()  # `--dice-weight 0`
    assert ce_only == pytest.approx(F.cross_entropy(logits, target[:, 0]).item(), rel=1e-5)


def test_loss_weights_are_checked():
    from mome.errors import ConfigError
    from mome.training.config import TrainConfig

    with pytest.raises(ConfigError, match="cannot both be 0"):
        TrainConfig(dice_weight=0.0, ce_weight=0.0)
    with pytest.raises(ConfigError, match=r"must be in \[0, 100\]"):
        TrainConfig(dice_weight=-1.0)
    assert TrainConfig(dice_weight=0.0).dice_weight == 0.0


def test_deep_supervised_loss_weights_levels():
    torch.manual_seed(1)
    outs = [torch.randn(1, 2, 8, 8, 8), torch.randn(1, 2, 4, 4, 4), torch.randn(1, 2, 2, 2, 2)]
    tgts = [(torch.rand(1, 1, *o.shape[2:]) > 0.5).long() for o in outs]
    base = DiceCELoss()
    w = deep_supervision_weights(3)
    expected = sum(wi * base(o, t) for wi, o, t in zip(w, outs, tgts))
    assert DeepSupervisedLoss(base, 3)(outs, tgts).item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="output levels"):
        DeepSupervisedLoss(base, 2)(outs, tgts)


def _batch(seed: int = 0):
    torch.manual_seed(seed)
    model = mome.create_model("tiny")
    x = torch.randn(3, 1, 16, 16, 16)
    label = (torch.rand(3, 1, 16, 16, 16) > 0.8).short()
    targets = [label, label[:, :, ::2, ::2, ::2]]
    modality = torch.tensor([0, 2, 2])
    return model, x, targets, modality


def test_curriculum_loss_is_f_expert_plus_one_minus_f_mome():
    model, x, targets, modality = _batch()
    out = model(x, return_experts=True)
    seg = DeepSupervisedLoss(DiceCELoss(), 2)
    loss = CurriculumLoss(seg)
    for epoch, epochs in ((0, 4), (1, 4), (3, 4)):
        terms = loss(out.logits, out.expert_logits, targets, modality, epoch, epochs)
        f = (1 - epoch / epochs) ** 2
        # the expert term by hand: sample b supervises expert modality[b] only
        per_sample = [seg([out.expert_logits[m][lvl][b:b + 1] for lvl in range(2)], [t[b:b + 1] for t in targets])
                      for b, m in enumerate(modality.tolist())]
        expert = torch.stack(per_sample).mean()  # per-sample Dice and equal-size patches: batch mean
        mome_term = seg(out.logits, targets)
        assert terms.f == pytest.approx(f)
        assert terms.expert.item() == pytest.approx(expert.item(), rel=1e-5)
        assert terms.mome.item() == pytest.approx(mome_term.item(), rel=1e-6)
        assert terms.total.item() == pytest.approx(f * expert.item() + (1 - f) * mome_term.item(), rel=1e-5)


def test_the_objective_passes_the_curriculum_shape_from_the_config():
    from mome.training.config import get_train_config
    from mome.training.objectives import MoMEObjective

    model, x, targets, modality = _batch()
    out = model(x, return_experts=True)
    for power, span, epoch, expected in ((2.0, 1.0, 2, 0.25), (1.0, 1.0, 2, 0.5), (2.0, 0.5, 2, 0.0)):
        cfg = get_train_config("tiny", "joint").replace(curriculum_power=power, curriculum_span=span)
        loss = MoMEObjective(cfg, 2, list(model.config.modalities)).loss
        assert loss(out.logits, out.expert_logits, targets, modality, epoch, 4).f == pytest.approx(expected)


def test_without_curriculum_only_the_fused_output_is_supervised():
    model, x, targets, modality = _batch()
    out = model(x, return_experts=True)
    terms = CurriculumLoss(DeepSupervisedLoss(DiceCELoss(), 2), curriculum=False)(
        out.logits, out.expert_logits, targets, modality, 0, 10)
    assert terms.f == 0.0
    assert terms.total.item() == pytest.approx(terms.mome.item())
    assert not terms.expert.requires_grad and math.isfinite(terms.expert.item())


@pytest.mark.parametrize("via", ["expert_term", "curriculum_at_f1"])
def test_only_the_samples_own_expert_gets_gradient_from_the_expert_term(via):
    model, x, targets, modality = _batch()  # samples of experts 0 and 2
    out = model(x, return_experts=True)
    seg = DeepSupervisedLoss(DiceCELoss(), 2)
    if via == "expert_term":
        loss = seg(select_sample_experts(out.expert_logits, modality), targets)
    else:  # epoch 0: f = 1, the fused term has weight 0
        loss = CurriculumLoss(seg)(out.logits, out.expert_logits, targets, modality, 0, 10).total
    loss.backward()
    for i, expert in enumerate(model.experts):
        heads = list(expert.decoder.seg_layers.parameters())
        norm = sum(float(p.grad.abs().sum()) if p.grad is not None else 0.0 for p in heads)
        if i in (0, 2):
            assert norm > 0, f"expert {i} should be trained by its samples"
        else:
            assert norm == 0.0, f"expert {i} received gradient from other modalities' samples"
