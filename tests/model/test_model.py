"""The MoME network: shapes, eq. 1, gates, gradients, parameter counts, configs, input checks."""

from __future__ import annotations

import json

import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from torch import nn
import torch.nn.functional as F

import mome
from mome.errors import ConfigError, ShapeError
from mome.model import MoMEConfig, UNetConfig, build_model, count_parameters, get_preset_config
from mome.model.config import config_from_json, config_to_json


def _x(size=16, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, size, size, size, generator=g)


@pytest.mark.parametrize("preset,size", [("tiny", 16), ("cpu", 32), ("paper", 64)])
def test_output_shapes_every_level(preset, size):
    torch.manual_seed(0)
    model = mome.create_model(preset).eval()
    cfg = model.config
    with torch.no_grad():
        out = model(_x(size, batch=1), return_experts=True, return_gates=True)
    n_levels = cfg.expert.n_levels()
    assert len(out.logits) == n_levels
    for level, logits in enumerate(out.logits):
        s = size // 2**level
        assert logits.shape == (1, 2, s, s, s)
        assert out.gates[level].shape == (1, cfg.n_experts, 2, s, s, s)
        for e in range(cfg.n_experts):
            assert out.expert_logits[e][level].shape == (1, 2, s, s, s)


def test_eq1_matches_hand_computation():
    torch.manual_seed(1)
    model = mome.create_model("tiny").eval()
    with torch.no_grad():
        out = model(_x(), return_experts=True, return_gates=True)
    for level, fused in enumerate(out.logits):
        by_hand = torch.zeros_like(fused)
        for i in range(model.config.n_experts):
            for c in range(2):
                by_hand[:, c] += out.expert_logits[i][level][:, c] * out.gates[level][:, i, c]
        torch.testing.assert_close(fused, by_hand, rtol=1e-5, atol=1e-6)


def test_identity_gate_is_raw_gate_network_output():
    torch.manual_seed(2)
    model = mome.create_model("tiny").eval()
    x = _x(batch=1)
    with torch.no_grad():
        out = model(x, return_gates=True)
        feats = [e.encoder(x)[0] for e in model.experts]
        raw = model.gate.net.decoder(model.gate.net.encoder(torch.cat([x, *feats], 1)))
    # channel 2i + c of the gate weights expert i, class c
    for level in range(len(raw)):
        for i in range(5):
            torch.testing.assert_close(out.gates[level][:, i], raw[level][:, 2 * i:2 * i + 2])


@pytest.mark.parametrize("gate_type", ["hierarchical", "basic"])
def test_softmax_weights_sum_to_one(gate_type):
    torch.manual_seed(3)
    model = mome.create_model("tiny", gate_activation="softmax", gate_type=gate_type).eval()
    with torch.no_grad():
        out = model(_x(), return_gates=True)
    assert len(out.gates) == model.config.expert.n_levels()
    for g in out.gates:
        torch.testing.assert_close(g.sum(dim=1), torch.ones_like(g.sum(dim=1)), rtol=0, atol=1e-5)
        assert (g >= 0).all()


def test_basic_gate_reuses_one_full_resolution_map():
    torch.manual_seed(4)
    model = mome.create_model("cpu", gate_type="basic").eval()
    with torch.no_grad():
        out = model(_x(32, batch=1), return_gates=True)
    full = out.gates[0]
    b, n, c = full.shape[:3]
    for g in out.gates[1:]:
        expected = F.avg_pool3d(full.reshape(b, n * c, *full.shape[3:]), kernel_size=32 // g.shape[-1])
        torch.testing.assert_close(g, expected.view_as(g), rtol=1e-5, atol=1e-6)
    # the basic gate network has a single (full-resolution) head
    assert not model.gate.net.decoder.deep_supervision


@pytest.mark.parametrize("gate_type", ["hierarchical", "basic"])
def test_gradients_reach_every_expert_and_the_gate(gate_type):
    torch.manual_seed(5)
    model = mome.create_model("tiny", gate_type=gate_type)
    out = model(_x())
    sum(o.square().mean() for o in out.logits).backward()
    for i, expert in enumerate(model.experts):
        grads = [p.grad for p in expert.parameters() if p.requires_grad]
        assert all(g is not None for g in grads), f"expert {i} has parameters without gradient"
        assert any(g.abs().sum() > 0 for g in grads)
        # the stem also learns through the gate input
        assert expert.encoder.stages[0][0].convs[0].conv.weight.grad.abs().sum() > 0
    n_heads = len(model.gate.net.decoder.seg_layers)
    # the basic gate never uses the gate network's low-resolution heads (its one map is downsampled)
    unused = {f"net.decoder.seg_layers.{k}." for k in range(n_heads - 1)} if gate_type == "basic" else set()
    gate_grads = [p.grad for name, p in model.gate.named_parameters()
                  if not any(name.startswith(u) for u in unused)]
    assert all(g is not None for g in gate_grads)
    assert sum(g.abs().sum() for g in gate_grads) > 0


def test_deep_supervision_off_computes_only_full_resolution():
    torch.manual_seed(6)
    model = mome.create_model("tiny").eval()
    x = _x()
    with torch.no_grad():
        full = model(x).logits[0]
        model.set_deep_supervision(False)
        out = model(x, return_gates=True)
    assert len(out.logits) == 1 and len(out.gates) == 1
    torch.testing.assert_close(out.logits[0], full)


def _plain_unet(input_channels, num_classes):
    return PlainConvUNet(
        input_channels, 6, [32, 64, 128, 256, 320, 320], nn.Conv3d, 3, [1, 2, 2, 2, 2, 2], 2, num_classes, 2,
        conv_bias=True, norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True},
        nonlin=nn.LeakyReLU, nonlin_kwargs={"negative_slope": 0.01, "inplace": True}, deep_supervision=True,
    )


def test_paper_preset_parameter_count_matches_plain_unets():
    model = mome.create_model("paper")
    expert = _plain_unet(1, 2)
    gate = _plain_unet(161, 10)
    assert count_parameters(model) == 5 * count_parameters(expert) + count_parameters(gate)
    assert model.config.gate_config().input_channels == 161
    assert model.config.gate_config().num_classes == 10
    # identical state-dict layout to nnU-Net's network (official weights load by key)
    ours = {k: v.shape for k, v in model.experts[0].state_dict().items()}
    assert ours == {k: v.shape for k, v in expert.state_dict().items()}
    assert {k: v.shape for k, v in model.gate.net.state_dict().items()} == \
        {k: v.shape for k, v in gate.state_dict().items()}


def test_any_number_of_experts_and_names():
    cfg = get_preset_config("tiny").replace(modalities=["A", "B", "C"])
    model = build_model(cfg).eval()
    assert model.config.gate_config().input_channels == 1 + 3 * 4
    with torch.no_grad():
        out = model(_x(batch=1), return_gates=True)
    assert out.gates[0].shape[1] == 3
    with pytest.raises(ConfigError, match="unique"):
        cfg.replace(modalities=["T1", "t1"])


def test_config_json_round_trip():
    for name in ("paper", "cpu", "tiny"):
        cfg = get_preset_config(name).replace(gate_type="basic", gate_activation="softmax")
        assert config_from_json(config_to_json(cfg)) == cfg
    unet = UNetConfig(features_per_stage=[4, 8], strides=[1, [2, 2, 1]], kernel_sizes=[3, 3],
                      n_conv_per_stage=[2, 2], n_conv_per_stage_decoder=[2])
    assert config_from_json(config_to_json(unet)) == unet
    with pytest.raises(ConfigError):
        config_from_json('{"kind": "Nope"}')
    with pytest.raises(ConfigError):
        MoMEConfig(gate_type="flat")


def test_save_load_round_trip_identical_outputs(tmp_path):
    torch.manual_seed(7)
    model = mome.create_model("tiny", gate_activation="softmax").eval()
    mome.save_model(model, tmp_path / "m", metadata={"note": "x"})
    loaded = mome.load_model(tmp_path / "m").eval()
    assert loaded.config == model.config
    x = _x()
    with torch.no_grad():
        a, b = model(x).logits, loaded(x).logits
    for u, v in zip(a, b):
        assert torch.equal(u, v)


def test_load_refuses_config_weights_mismatch(tmp_path):
    from mome.errors import CheckpointError

    model = mome.create_model("tiny")
    folder = mome.save_model(model, tmp_path / "m")
    record = json.loads((folder / "config.json").read_text())
    record["config"]["expert"]["features_per_stage"] = [6, 8, 16]
    (folder / "config.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="do not match the configuration"):
        mome.load_model(folder)


def test_load_refuses_corrupt_weights(tmp_path):
    from mome.errors import CheckpointError

    folder = mome.save_model(mome.create_model("tiny"), tmp_path / "m")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        mome.load_model(folder)
    with pytest.raises(CheckpointError, match="does not exist"):
        mome.load_model(tmp_path / "absent")


def test_save_refuses_existing_folder(tmp_path):
    from mome.errors import OutputExistsError

    model = mome.create_model("tiny")
    mome.save_model(model, tmp_path / "m")
    with pytest.raises(OutputExistsError):
        mome.save_model(model, tmp_path / "m")
    mome.save_model(model, tmp_path / "m", overwrite=True)


@pytest.mark.parametrize("shape,match", [
    ((16, 16), "5D tensor"),
    ((1, 16, 16, 16), "5D tensor"),
    ((1, 1, 1, 16, 16, 16), "5D tensor"),
    ((1, 2, 16, 16, 16), r"expected 1 channel"),
    ((1, 1, 16, 18, 16), "not divisible"),
])
def test_wrong_inputs_raise_shape_error(shape, match):
    model = mome.create_model("tiny")
    with pytest.raises(ShapeError, match=match) as info:
        model(torch.zeros(shape))
    assert "(batch, 1, X, Y, Z)" in str(info.value)
    with pytest.raises(ShapeError):
        model.experts[0](torch.zeros(shape))


def test_unknown_preset():
    with pytest.raises(ConfigError, match="known presets: paper, cpu, tiny"):
        mome.create_model("huge")
