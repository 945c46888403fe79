"""Every inference optimisation path against the fp32 reference on tiny inputs.

Tolerances (stated here, also in docs/performance.md):
* exact paths (staged forward with every expert, channels-last, a whole-volume window equal to
  one network call): max |probability difference| <= 1e-5;
* bf16 autocast, on a random-weight tiny MoME (raw gate weights multiply five experts' rounding
  errors and its logits sit close to the decision boundary; trained networks do better, see the
  benchmark): mean |probability difference| <= 0.01, max <= 0.3, >= 98% of voxels with the same
  arg-max (measured over 12 seeds: mean <= 0.004, max <= 0.22, agreement >= 99.0%);
* expert skipping: equal to eq. 1 computed by hand over the kept experts (1e-5);
* grouped experts (grouped convolutions sum in another order): max |logit, gate or probability
  difference| <= 1e-4 (gates also 1e-4 relative).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mome
from mome.errors import ConfigError
from mome.inference.acceleration import gate_shares, select_experts, staged_mome_forward
from mome.inference.outputs import expert_weight_share
from mome.inference.predictor import Predictor

EXACT = 1e-5
# another memory layout (channels-last, a permuted view) lets oneDNN pick another kernel that sums in another order:
# float32 rounding (1.2e-7) over a few hundred products per output and a handful of layers gives up to ~1e-5 on a
# probability (1.5e-5 seen on CI); a layout bug gives differences of order 0.1
LAYOUT = 1e-4


def _model(activation="identity", gate_type="hierarchical", seed=0):
    torch.manual_seed(seed)
    model = mome.create_model("tiny", gate_activation=activation, gate_type=gate_type).eval()
    model.set_deep_supervision(False)
    return model


def _image(shape=(20, 23, 17), seed=0):
    rng = np.random.default_rng(seed)
    img = np.zeros(shape, np.float32)
    img[2:-2, 2:-2, 2:-2] = rng.normal(100, 15, (shape[0] - 4, shape[1] - 4, shape[2] - 4))
    img[6:12, 8:15, 5:10] += 150
    return img


@pytest.mark.parametrize("activation", ["identity", "softmax"])
@pytest.mark.parametrize("gate_type", ["hierarchical", "basic"])
def test_staged_forward_with_all_experts_equals_forward(activation, gate_type):
    model = _model(activation, gate_type)
    x = torch.randn(2, 1, 16, 20, 12, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model(x, return_gates=True)
        out = staged_mome_forward(model, x)
    assert out.kept == [0, 1, 2, 3, 4]
    torch.testing.assert_close(out.logits, ref.logits[0], rtol=0, atol=EXACT)
    torch.testing.assert_close(out.gates, ref.gates[0], rtol=0, atol=EXACT)


@pytest.mark.parametrize("activation", ["identity", "softmax"])
def test_skipped_experts_drop_out_of_eq1(activation):
    model = _model(activation, seed=3)
    x = torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ref = model(x, return_experts=True, return_gates=True)
        out = staged_mome_forward(model, x, max_experts=2)
    assert len(out.kept) == 2
    shares = out.shares.tolist()
    assert sorted(out.kept) == sorted(sorted(range(5), key=lambda i: -shares[i])[:2])
    g = ref.gates[0]
    if activation == "softmax":  # kept weights renormalised to sum to 1 per voxel
        g = g / g[:, out.kept].sum(dim=1, keepdim=True)
    by_hand = sum(ref.expert_logits[i][0] * g[:, i] for i in out.kept)
    torch.testing.assert_close(out.logits, by_hand, rtol=1e-5, atol=EXACT)


def test_gate_shares_match_the_stats_definition():
    model = _model("identity")
    x = torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(4))
    x[..., :4] = 0  # outside the "brain"
    with torch.inference_mode():
        out = staged_mome_forward(model, x)
    expected = expert_weight_share(out.gates[0].numpy(), (x[0, 0] != 0).numpy(), "identity")
    np.testing.assert_allclose(out.shares.numpy(), expected, rtol=1e-5)
    assert abs(float(out.shares.sum()) - 1) < 1e-6
    assert torch.allclose(gate_shares(torch.zeros(1, 5, 2, 4, 4, 4), "identity"), torch.full((5,), 0.2))


def test_select_experts():
    shares = torch.tensor([0.05, 0.6, 0.01, 0.3, 0.04])
    assert select_experts(shares) == [0, 1, 2, 3, 4]
    assert select_experts(shares, skip_below=0.05) == [0, 1, 3]
    assert select_experts(shares, max_experts=2) == [1, 3]
    assert select_experts(shares, skip_below=0.9) == [1]  # never none: the largest share runs


@pytest.mark.parametrize("options", [dict(skip_experts=1.0), dict(skip_experts=-0.1), dict(max_experts=0)])
def test_bad_skip_options_raise(options):
    with pytest.raises(ConfigError):
        Predictor(_model(), device="cpu", **options)


def _predict(model, image, **options):
    options.setdefault("patch_size", 16)
    return Predictor(model, device="cpu", **options).predict_array(image)


def test_channels_last_matches_reference():
    model, image = _model(seed=5), _image()
    ref = _predict(model, image)
    out = _predict(_model(seed=5), image, channels_last=True)
    assert np.abs(out.probabilities - ref.probabilities).max() <= LAYOUT
    assert np.abs(out.gates - ref.gates).max() <= LAYOUT


def test_bf16_close_to_fp32():
    model, image = _model(seed=6), _image()
    ref = _predict(model, image)
    out = _predict(model, image, precision="bf16")
    diff = np.abs(out.probabilities - ref.probabilities)
    assert diff.mean() <= 0.01 and diff.max() <= 0.3
    assert (out.mask == ref.mask).mean() >= 0.98


def test_whole_volume_is_one_network_call_on_the_padded_image():
    model, image = _model(seed=7), _image(shape=(20, 23, 17))
    out = _predict(model, image, patch_size="whole")
    assert out.info["patch_size"] == "whole"
    # the same result as sliding windows the size of the padded image (20, 24, 20)
    ref = _predict(model, image, patch_size=(20, 24, 20))
    assert np.abs(out.probabilities - ref.probabilities).max() <= EXACT


def test_predictor_skipping_with_every_expert_kept_is_exact_and_counts_calls():
    model, image = _model(seed=8), _image()
    ref = _predict(model, image, tta=True)
    out = _predict(model, image, tta=True, max_experts=5)
    assert np.abs(out.probabilities - ref.probabilities).max() <= EXACT
    assert np.abs(out.gates - ref.gates).max() <= EXACT
    calls = out.info["network_calls"]
    assert calls > 1 and out.info["expert_calls"] == [calls] * 5


def test_predictor_skipping_runs_fewer_experts():
    model, image = _model("softmax", seed=9), _image()
    out = _predict(model, image, max_experts=1)
    assert sum(out.info["expert_calls"]) == out.info["network_calls"]
    assert out.probabilities.shape == (2, *image.shape)
    np.testing.assert_allclose(out.probabilities.sum(0), 1.0, atol=1e-5)


def test_single_network_ignores_expert_options():
    model = _model(seed=10).experts[0]
    image = _image()
    ref = _predict(model, image)
    out = _predict(model, image, max_experts=1, channels_last=True)
    assert out.gates is None and "expert_calls" not in out.info
    assert np.abs(out.probabilities - ref.probabilities).max() <= LAYOUT


@pytest.mark.parametrize("activation", ["identity", "softmax"])
def test_grouped_experts_match_reference(activation):
    from mome.inference.grouped import GroupedExperts, grouped_mome_forward

    model = _model(activation, seed=11)
    x = torch.randn(2, 1, 16, 20, 12, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ref = model(x, return_gates=True, return_experts=True)
        grouped = GroupedExperts(list(model.experts)).eval()
        logits, gates = grouped_mome_forward(model, grouped, x)
        per_expert = grouped(x)
    for i in range(5):
        torch.testing.assert_close(per_expert[:, i], ref.expert_logits[i][0], rtol=0, atol=1e-4)
    torch.testing.assert_close(logits, ref.logits[0], rtol=0, atol=1e-4)
    # the gates come from the same encoder features, but the grouped run's batch layout lets float32
    # reductions (and the thread split) sum in another order: the raw (identity) gate weights are then
    # off by a few float32 ulps of their magnitude (1.19e-5 seen on a busy 2-core machine), so they get
    # the same relative + absolute 1e-4 as the logits
    torch.testing.assert_close(gates, ref.gates[0], rtol=1e-4, atol=1e-4)


def test_predictor_grouped_experts_matches_reference():
    model, image = _model(seed=12), _image()
    ref = _predict(model, image, tta=True)
    out = _predict(model, image, tta=True, grouped_experts=True, channels_last=True)
    assert out.info["grouped_experts"]
    assert np.abs(out.probabilities - ref.probabilities).max() <= LAYOUT
    assert np.abs(out.gates - ref.gates).max() <= LAYOUT
    skipping = Predictor(model, device="cpu", grouped_experts=True, max_experts=2)
    assert skipping.grouped is None  # skipping takes precedence


def test_auto_precision_is_fp32_on_a_cpu_whatever_its_bf16_support():
    # bf16 missed issue 18's agreement bar on a CPU (docs/performance.md), so auto never picks it there
    from mome.inference.predictor import resolve_precision

    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    predictor = Predictor(_model(), device="cpu", precision="auto")
    assert predictor.precision == "fp32"


def test_default_mome_path_is_staged_and_equals_mome_forward():
    model, image = _model(seed=13), _image()
    staged = Predictor(model, device="cpu", patch_size=16)
    assert staged.staged
    plain = Predictor(model, device="cpu", patch_size=16)
    plain.staged = False  # MoME.forward
    a, b = staged.predict_array(image), plain.predict_array(image)
    assert np.abs(a.probabilities - b.probabilities).max() <= EXACT
    assert np.abs(a.gates - b.gates).max() <= EXACT


def test_network_axes_feed_the_network_a_transposed_volume_and_map_the_result_back():
    """An nnU-Net-imported model sees SimpleITK's (k, j, i) arrays: predicting with network_axes=(2, 1, 0)
    must equal transposing the volume by hand, predicting in the identity order, and transposing back."""
    from mome.inference.predictor import network_axes_from_record

    model = _model(seed=5)
    img = _image((24, 18, 13))
    permuted = Predictor(model, device="cpu", patch_size="whole", network_axes=(2, 1, 0), gates=False)
    plain = Predictor(model, device="cpu", patch_size="whole", gates=False)
    got = permuted.predict_array(img).probabilities
    ref = plain.predict_array(np.ascontiguousarray(img.transpose(2, 1, 0))).probabilities.transpose(0, 3, 2, 1)
    assert got.shape == (2, *img.shape)
    np.testing.assert_allclose(got, ref, atol=LAYOUT)
    # and it is not a no-op: the identity order gives another result on this anisotropic input
    assert np.abs(plain.predict_array(img).probabilities - got).max() > 1e-3
    # sliding windows too (the padding divisor follows the permutation)
    sliding = Predictor(model, device="cpu", patch_size=(16, 16, 16), network_axes=(2, 1, 0), gates=False)
    ref_sliding = Predictor(model, device="cpu", patch_size=(16, 16, 16), gates=False).predict_array(
        np.ascontiguousarray(img.transpose(2, 1, 0))).probabilities.transpose(0, 3, 2, 1)
    # the permuted volume reaches the convolutions as a strided view, the reference as a contiguous copy
    np.testing.assert_allclose(sliding.predict_array(img).probabilities, ref_sliding, atol=LAYOUT)

    assert network_axes_from_record({}) == (0, 1, 2)
    assert network_axes_from_record({"nnunet": {"image_reader_writer": "SimpleITKIO",
                                                "transpose_forward": [0, 1, 2]}}) == (2, 1, 0)
    assert network_axes_from_record({"nnunet": {"image_reader_writer": "NibabelIO",
                                                "transpose_forward": [2, 0, 1]}}) == (2, 0, 1)
    assert network_axes_from_record({"nnunet": {"transpose_forward": [1, 0, 2]}}) == (1, 2, 0)
    with pytest.raises(ConfigError, match="permutation"):
        Predictor(model, device="cpu", network_axes=(0, 0, 1))
