"""Gradient checkpointing: the same outputs and gradients as the plain forward/backward."""

from __future__ import annotations

import copy

import pytest
import torch

import mome


def _loss_and_grads(model, x):
    out = model(x)
    logits = out.logits if hasattr(out, "logits") else out
    loss = sum((lvl.float() ** 2).mean() for lvl in logits)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return [lvl.detach() for lvl in logits], grads


@pytest.mark.parametrize("gate_type", ["hierarchical", "basic"])
def test_mome_checkpointing_changes_nothing(gate_type):
    torch.manual_seed(0)
    plain = mome.create_model("tiny", gate_type=gate_type)
    ckpt = copy.deepcopy(plain)
    ckpt.set_gradient_checkpointing(True)
    assert ckpt.gradient_checkpointing and not plain.gradient_checkpointing
    x = torch.randn(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    out_a, grads_a = _loss_and_grads(plain, x)
    out_b, grads_b = _loss_and_grads(ckpt, x)
    for a, b in zip(out_a, out_b):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 0
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-5, atol=1e-6, msg=name)


def test_expert_checkpointing_without_deep_supervision_and_in_inference():
    torch.manual_seed(2)
    net = mome.create_model("tiny").experts[0]
    net.set_deep_supervision(False)
    x = torch.randn(1, 1, 16, 16, 16)
    ref = net(x)[0]
    net.set_gradient_checkpointing(True)
    torch.testing.assert_close(net(x)[0], ref, rtol=0, atol=1e-6)
    with torch.no_grad():  # no gradients recorded: the plain path runs
        torch.testing.assert_close(net(x)[0], ref, rtol=0, atol=1e-6)
