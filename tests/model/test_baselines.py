"""Multi-Talent and Hermes networks: heads, gradients, conditioning, errors, configs, save/load."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mome.errors import ConfigError, InputError, ShapeError
from mome.model import build_model, get_preset_config
from mome.model.baselines import (HermesConfig, HermesNet, MultiTalentConfig, MultiTalentNet, multitalent_config,
                                  select_heads)
from mome.model.config import config_from_json, config_to_json
from mome.weights.store import load_model, save_model

DATASETS = ["BraTS", "ATLAS", "WMH"]


def _x(size=16, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, size, size, size, generator=g)


def _tiny_unet():
    return get_preset_config("tiny").expert


def _multitalent(head="sigmoid", seed=0) -> MultiTalentNet:
    torch.manual_seed(seed)
    return build_model(multitalent_config(_tiny_unet(), DATASETS, head=head))


def _hermes(seed=0, **overrides) -> HermesNet:
    torch.manual_seed(seed)
    cfg = HermesConfig(unet=_tiny_unet(), fusion_stages=2, fusion_blocks=1, bottleneck_fusion_blocks=1,
                       modality_tokens=2, head_dim=4, **overrides)
    return build_model(cfg)


# ---------------------------------------------------------------- Multi-Talent


@pytest.mark.parametrize("head,k", [("sigmoid", 1), ("softmax", 2)])
def test_multitalent_heads_shapes_and_selection(head, k):
    net = _multitalent(head).eval()
    x = _x()
    with torch.no_grad():
        every = net(x)
        chosen = net(x, dataset=["WMH", "brats"])  # names are case-insensitive
    assert [tuple(t.shape) for t in every] == [(2, 3, k, 16, 16, 16), (2, 3, k, 8, 8, 8)]
    assert [tuple(t.shape) for t in chosen] == [(2, 2, 16, 16, 16), (2, 2, 8, 8, 8)]
    for all_heads, sel in zip(every, chosen):
        for b, d in enumerate([2, 0]):
            if head == "sigmoid":
                torch.testing.assert_close(sel[b, 0], torch.zeros_like(sel[b, 0]))
                torch.testing.assert_close(sel[b, 1], all_heads[b, d, 0])
                # softmax over [0, z] is the sigmoid head's probability
                torch.testing.assert_close(sel.softmax(1)[b, 1], torch.sigmoid(all_heads[b, d, 0]))
            else:
                torch.testing.assert_close(sel[b], all_heads[b, d])


def test_multitalent_heads_differ_per_dataset():
    net = _multitalent().eval()
    with torch.no_grad():
        a = net(_x(batch=1), dataset="BraTS")[0]
        b = net(_x(batch=1), dataset="ATLAS")[0]
    assert (a - b).abs().max() > 1e-4


def test_multitalent_loss_ignores_other_datasets_heads():
    """A batch of BraTS and WMH samples: the ATLAS head gets exactly zero gradient, the others do not."""
    net = _multitalent().train()
    x = _x()
    target = (x[:, 0] > 1.0).long()
    out = net(x, dataset=["BraTS", "WMH"])
    loss = sum(F.cross_entropy(lvl, F.interpolate(target[:, None].float(), size=lvl.shape[2:]).long()[:, 0])
               for lvl in out)
    loss.backward()
    for seg in net.net.decoder.seg_layers:  # output row d is dataset d's head (one sigmoid channel each)
        g_w, g_b = seg.weight.grad, seg.bias.grad
        assert g_w.shape[0] == 3
        assert torch.count_nonzero(g_w[1]) == 0 and g_b[1] == 0  # ATLAS: no sample in the batch
        assert g_w[0].abs().sum() > 0 and g_w[2].abs().sum() > 0
    # the shared backbone learns from both samples
    assert net.net.encoder.stages[0][0].convs[0].conv.weight.grad.abs().sum() > 0


def test_multitalent_per_sample_heads_match_single_dataset_calls():
    net = _multitalent("softmax").eval()
    x = _x()
    with torch.no_grad():
        mixed = net(x, dataset=torch.tensor([1, 2]))[0]
        first = net(x[:1], dataset="ATLAS")[0]
        second = net(x[1:], dataset="WMH")[0]
    torch.testing.assert_close(mixed, torch.cat([first, second]), rtol=1e-4, atol=1e-4)


def test_multitalent_refuses_unseen_dataset_naming_known_ones():
    net = _multitalent()
    with pytest.raises(InputError, match="Tumour1.*BraTS, ATLAS, WMH.*cannot segment images of other datasets"):
        net(_x(batch=1), dataset="Tumour1")
    with pytest.raises(InputError, match="Tumour1"):
        net.conditioned(dataset="Tumour1")
    with pytest.raises(InputError, match="3 dataset names for a batch of 2"):
        net(_x(), dataset=["BraTS", "WMH", "ATLAS"])
    with pytest.raises(InputError, match=r"indices must be in \[0, 2\]"):
        net(_x(), dataset=torch.tensor([0, 3]))
    with pytest.raises(ShapeError):
        net(_x(size=18))


def test_multitalent_conditioned_wrapper_is_a_plain_network():
    net = _multitalent().eval()
    wrapped = net.conditioned(dataset="WMH")
    assert wrapped.config.divisor() == (4, 4, 4)  # what the Predictor reads
    wrapped.set_deep_supervision(False)
    with torch.no_grad():
        out = wrapped(_x(batch=1))
        ref = net(_x(batch=1), dataset="WMH")
    assert len(out) == 1 and out[0].shape == (1, 2, 16, 16, 16)
    torch.testing.assert_close(out[0], ref[0])


def test_multitalent_select_heads_checks_shapes():
    with pytest.raises(ShapeError):
        select_heads(torch.zeros(2, 3, 1, 4, 4, 4), torch.zeros(3, dtype=torch.long), "sigmoid")


@pytest.mark.parametrize("kwargs,match", [
    (dict(datasets=[]), "at least one dataset"),
    (dict(datasets=["A", "a"]), "unique"),
    (dict(datasets=["A"], head="relu"), "head must be one of"),
    (dict(datasets=["A"], unet=get_preset_config("tiny").expert.replace(num_classes=3)), "num_classes=2"),
])
def test_multitalent_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        MultiTalentConfig(**kwargs)


# ---------------------------------------------------------------- Hermes


def test_hermes_shapes_and_deep_supervision_switch():
    net = _hermes().eval()
    with torch.no_grad():
        out = net(_x(), modality=["T1", "FLAIR"], task=["tumour", "wmh"])
    assert [tuple(t.shape) for t in out.logits] == [(2, 2, 16, 16, 16), (2, 2, 8, 8, 8)]
    assert out.modality_logits.shape == (2, 5)
    torch.testing.assert_close(out.logits[0][:, 0], torch.zeros_like(out.logits[0][:, 0]))
    net.set_deep_supervision(False)
    with torch.no_grad():
        single = net(_x(), modality=["T1", "FLAIR"], task=["tumour", "wmh"])
    assert len(single.logits) == 1
    torch.testing.assert_close(single.logits[0], out.logits[0])


def test_hermes_output_changes_with_modality_and_task_token():
    net = _hermes().eval()
    x = _x(batch=1)
    with torch.no_grad():
        t1 = net(x, modality="T1", task="tumour")
        t1_again = net(x, modality="t1w", task="TUMOUR")  # aliases and case
        flair = net(x, modality="FLAIR", task="tumour")
        wmh = net(x, modality="T1", task="wmh")
    torch.testing.assert_close(t1.logits[0], t1_again.logits[0])
    assert (t1.logits[0] - flair.logits[0]).abs().max() > 1e-4
    assert (t1.modality_logits - flair.modality_logits).abs().max() > 1e-4
    assert (t1.logits[0] - wmh.logits[0]).abs().max() > 1e-4
    # only that token differs: swapping in FLAIR's tokens for T1 reproduces the FLAIR output
    with torch.no_grad():
        for layer in [*net.encoder_fusion.values(), *net.decoder_fusion.values()]:
            layer.modality_tokens[0] = layer.modality_tokens[3]
        swapped = net(x, modality="T1", task="tumour")
    torch.testing.assert_close(swapped.logits[0], flair.logits[0])


def test_hermes_attention_and_heads_receive_gradient():
    net = _hermes().train()
    x = _x()
    target = (x[:, 0] > 1.0).long()
    out = net(x, modality=["T2", "DWI"], task=["ms", "stroke_acute"])
    loss = F.cross_entropy(out.logits[0], target) + 0.01 * F.cross_entropy(out.modality_logits, torch.tensor([1, 4]))
    loss.backward()
    layers = {**{f"enc{k}": v for k, v in net.encoder_fusion.items()},
              **{f"dec{k}": v for k, v in net.decoder_fusion.items()}}
    assert sorted(layers) == ["dec1", "enc1", "enc2"]  # tiny: 3 stages, the 2 deepest fuse
    for name, layer in layers.items():
        for block in layer.blocks:
            for attn in (block.image_to_prior, block.prior_to_image):
                assert attn.in_proj_weight.grad is not None and attn.in_proj_weight.grad.abs().sum() > 0, name
                assert attn.out_proj.weight.grad.abs().sum() > 0, name
        # only the selected tokens learn: T2 (1) and DWI (4), ms (2) and stroke_acute (3)
        g = layer.modality_tokens.grad
        assert g[[1, 4]].abs().sum() > 0 and torch.count_nonzero(g[[0, 2, 3]]) == 0, name
        g = layer.task_tokens.grad
        assert g[[2, 3]].abs().sum() > 0 and torch.count_nonzero(g[[0, 1, 4]]) == 0, name
    assert net.mask_heads[0].to_weights[0][0].weight.grad.abs().sum() > 0
    assert net.modality_classifier.mlp[0].weight.grad.abs().sum() > 0


def test_hermes_requires_modality_and_task():
    net = _hermes()
    with pytest.raises(InputError, match="needs the modality.*T1, T2, T1ce, FLAIR, DWI"):
        net(_x(batch=1), task="tumour")
    with pytest.raises(InputError, match="needs the task.*tumour, wmh, ms, stroke_acute, stroke_chronic"):
        net(_x(batch=1), modality="T1")
    with pytest.raises(InputError, match="unknown modality 'ADC'"):
        net(_x(batch=1), modality="ADC", task="tumour")
    with pytest.raises(InputError, match="unknown task .*'glioma'"):
        net(_x(batch=1), modality="T1", task="glioma")
    with pytest.raises(InputError, match="unknown modality"):
        net.conditioned(modality="PET", task="tumour")


def test_hermes_conditioned_wrapper():
    net = _hermes().eval()
    wrapped = net.conditioned(modality="DWI", task="stroke_acute")
    with torch.no_grad():
        out = wrapped(_x(batch=1))
        ref = net(_x(batch=1), modality="DWI", task="stroke_acute")
    torch.testing.assert_close(out[0], ref.logits[0])


def test_hermes_fusion_placement_follows_hermes_on_a_five_stage_unet():
    cfg = HermesConfig(unet=get_preset_config("cpu").expert)
    assert cfg.encoder_fusion_stages() == [2, 3, 4]  # Hermes: 1/4, 1/8 and the bottleneck
    assert cfg.decoder_fusion_levels() == [2, 3]
    net = HermesNet(cfg)
    assert len(net.encoder_fusion["4"].blocks) == 4 and len(net.encoder_fusion["2"].blocks) == 2
    assert net.encoder_fusion["4"].blocks[0].image_to_prior.num_heads == 4  # 128 channels / 32
    assert net.encoder_fusion["2"].modality_tokens.shape == (5, 10, 32)
    assert cfg.task_name(dataset="WMH", modality="FLAIR", lesion_type="wmh") == "wmh"
    assert cfg.replace(task_key="dataset_modality").task_name(
        dataset="WMH", modality="FLAIR", lesion_type="wmh") == "WMH/FLAIR"


@pytest.mark.parametrize("kwargs,match", [
    (dict(tasks=[]), "at least one entry in tasks"),
    (dict(modalities=["T1", "t1"]), "unique"),
    (dict(task_key="organ"), "task_key"),
    (dict(fusion_stages=4), r"fusion_stages must be in \[1, 3\]"),
    (dict(modality_tokens=0), "modality_tokens must be >= 1"),
])
def test_hermes_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        HermesConfig(unet=_tiny_unet(), **kwargs)


# ---------------------------------------------------------------- configs and weights


def test_configs_json_round_trip():
    for cfg in (multitalent_config(_tiny_unet(), DATASETS, head="softmax"),
                HermesConfig(unet=_tiny_unet(), task_key="dataset", tasks=DATASETS, fusion_stages=2)):
        again = config_from_json(config_to_json(cfg))
        assert type(again) is type(cfg) and again == cfg


def test_save_load_round_trip(tmp_path):
    x = _x(batch=1)
    for net, kwargs in ((_multitalent(), dict(dataset="ATLAS")),
                        (_hermes(), dict(modality="T1ce", task="tumour"))):
        net.eval()
        folder = save_model(net, tmp_path / type(net).__name__)
        loaded = load_model(folder).eval()
        assert type(loaded) is type(net) and loaded.config == net.config
        with torch.no_grad():
            a, b = net(x, **kwargs), loaded(x, **kwargs)
        a, b = getattr(a, "logits", a), getattr(b, "logits", b)
        for la, lb in zip(a, b):
            torch.testing.assert_close(la, lb)
