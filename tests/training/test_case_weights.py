"""Per-case sampling weights: the patch sampler follows them, and Multi-Talent's member carries its own."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mome.data.collection import Case, Collection
from mome.errors import ConfigError
from mome.training.data import PreparedCase
from mome.training.sampling import PatchBatches
from mome.training.stages import resolve
from mome.training.systems import Member, SystemOptions, get_system


def _case(i: int, dataset: str, modality: str = "T1", split: str = "train") -> Case:
    return Case(id=f"{dataset}_{i}_{modality}", image=Path(f"/nonexistent/{dataset}_{i}.nii.gz"), label=None,
                modality=modality, dataset=dataset, lesion_type="tumour", split=split)


def _prepared(datasets: list[str]) -> list[PreparedCase]:
    vol = np.zeros((8, 8, 8), dtype=np.float32)
    label = np.zeros((8, 8, 8), dtype=np.int8)
    label[3:5, 3:5, 3:5] = 1
    return [PreparedCase(_case(i, d), vol, label, np.argwhere(label == 1).astype(np.int32))
            for i, d in enumerate(datasets)]


def _batches(prepared, **kwargs) -> PatchBatches:
    return PatchBatches(prepared, ["T1"], [8, 8, 8], 2, None, augmentation=False, **kwargs)


def _frequencies(batches: PatchBatches, draws: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = np.bincount([batches.draw_case(rng) for _ in range(draws)], minlength=len(batches.cases))
    return counts / draws


def test_case_draws_follow_the_weights():
    prepared = _prepared(["A", "A", "B", "B", "C"])
    weights = [1.0, 3.0, 0.0, 2.0, 4.0]
    freq = _frequencies(_batches(prepared, case_weights=weights), 40_000)
    # binomial std <= 0.0025 at 40k draws; uniform sampling (0.2 each) would miss by >= 0.1
    np.testing.assert_allclose(freq, np.array(weights) / sum(weights), atol=0.01)
    assert freq[2] == 0.0  # weight 0: never drawn
    # deterministic under the seed; unweighted sampling is unchanged (uniform over cases)
    np.testing.assert_array_equal(freq, _frequencies(_batches(prepared, case_weights=weights), 40_000))
    np.testing.assert_allclose(_frequencies(_batches(prepared), 40_000), 0.2, atol=0.01)


def test_balanced_sampling_draws_the_group_uniformly_then_by_weight():
    prepared = _prepared(["A", "A", "B", "B", "C"])
    freq = _frequencies(_batches(prepared, sampling="dataset", case_weights=[1.0, 3.0, 1.0, 1.0, 5.0]), 40_000)
    third = 1 / 3
    np.testing.assert_allclose(freq, [third / 4, third * 3 / 4, third / 2, third / 2, third], atol=0.01)


def test_batches_use_the_weighted_draws():
    prepared = _prepared(["A", "B"])
    batches = _batches(prepared, case_weights=[0.0, 1.0], seed=3)
    ids = Counter(cid for i in range(20) for cid in batches[(0, i)]["case_id"])
    assert ids == Counter({prepared[1].case.id: 40})


def test_bad_weights_are_refused():
    prepared = _prepared(["A", "B"])
    with pytest.raises(ValueError):
        _batches(prepared, case_weights=[1.0])
    with pytest.raises(ValueError):
        _batches(prepared, case_weights=[1.0, -1.0])
    with pytest.raises(ValueError):  # dataset B cannot be drawn from
        _batches(prepared, sampling="dataset", case_weights=[1.0, 0.0])
    with pytest.raises(ConfigError):
        Member(key="", cases=[p.case for p in prepared], modalities=["T1"], build=lambda: None,
               objective=None, case_weights=[1.0])


def test_multitalent_member_weights_cases_by_inverse_sqrt_dataset_size():
    sizes = {"A": 16, "B": 4, "C": 1}
    cases = [_case(i, d) for d, n in sizes.items() for i in range(n)] + [_case(0, "A", split="test")]
    ctx = resolve(get_system("multitalent"), Collection("hand", cases), "tiny", {}, {}, SystemOptions())
    (member,) = get_system("multitalent").plan(ctx)
    assert len(member.case_weights) == len(member.cases) == 21
    for case, w in zip(member.cases, member.case_weights):
        assert w * math.sqrt(sizes[case.dataset]) == pytest.approx(member.case_weights[-1])  # C: n = 1
    totals = {d: sum(w for c, w in zip(member.cases, member.case_weights) if c.dataset == d) for d in sizes}
    norm = sum(math.sqrt(n) for n in sizes.values())
    assert totals == pytest.approx({d: math.sqrt(n) / norm for d, n in sizes.items()})
    assert "sampling_note" not in member.info
    assert member.info["sampling_method_dataset_shares"] == pytest.approx(totals, abs=1e-4)
