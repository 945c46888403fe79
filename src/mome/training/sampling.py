"""Patch batches as nnU-Net's 3D data loader makes them, reproducible batch by batch.

Each batch is generated from its own seed ``(seed, epoch, batch index, rank)``: a run resumed at an
epoch boundary sees exactly the batches of an uninterrupted run, and the result does not depend on
the number of DataLoader workers. The ``DataLoader`` is given a :class:`EpochSampler` whose keys are
``(epoch, index)``; Lightning calls its ``set_epoch`` at the start of every epoch.

Per batch position (nnU-Net): a case is drawn (uniformly over cases, or balanced over tasks or
datasets; optionally weighted per case, see :class:`PatchBatches`), a patch larger than the training
patch (room for rotation and scaling) is cut around a random location, or around a random lesion voxel
for the last ``oversample_foreground`` share of the batch positions, padded where it leaves the volume,
then augmented and cropped to the patch size.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from mome.training.augment import initial_patch_size, training_transforms
from mome.training.data import PreparedCase


def rank_positions(batch_size: int, rank: int, world_size: int) -> range:
    """The global batch positions a DDP process generates (nnU-Net's split: the first ranks get one more)."""
    base, extra = divmod(batch_size, world_size)
    sizes = [base + (1 if r < extra else 0) for r in range(world_size)]
    start = sum(sizes[:rank])
    return range(start, start + sizes[rank])


def forced_foreground(position: int, batch_size: int, oversample: float) -> bool:
    """nnU-Net's rule: batch position ``i`` is centred on a lesion voxel iff ``i >= round(B * (1 - p))``."""
    return position >= round(batch_size * (1 - oversample))


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` for ``index`` in ``range(iterations)``; Lightning sets the epoch.

    Args:
        iterations: batches per epoch.
        epoch: the first epoch. Lightning creates the first epoch's iterator before it calls
            ``set_epoch``, so a resumed run must start the sampler at its resumed epoch.
    """

    def __init__(self, iterations: int, epoch: int = 0):
        self.iterations = int(iterations)
        self.epoch = int(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.iterations

    def __iter__(self):
        return iter([(self.epoch, i) for i in range(self.iterations)])


class PatchBatches(Dataset):
    """Map ``(epoch, index)`` -> one batch dict (this process's share of the global batch).

    Batch keys: ``image`` (B, 1, X, Y, Z) float32; ``target`` list per deep-supervision level of
    (B, 1, x, y, z) int16 labels (0/1); ``modality`` (B,) int64 index into ``modalities``; and per
    sample lists ``case_id``, ``modality_name``, ``dataset``, ``task``, ``lesion_type``. With ``tissue``,
    also ``tissue`` (B, 1, X, Y, Z) int16 tissue classes at full resolution (0 = unknown; a second label
    channel through the same augmentation, so it stays aligned with the image).

    Args:
        cases: prepared training volumes.
        modalities: the expert order (index = expert of the sample's modality); every case's modality
            must be in it.
        patch_size: final patch (voxels).
        batch_size: global batch size.
        ds_scales: deep-supervision label scales (see :func:`mome.training.augment.deep_supervision_scales`).
        oversample_foreground, augmentation, intensity_shift, sampling, seed: see
            :class:`~mome.training.config.TrainConfig`.
        generator, generated_fraction: a :class:`~mome.data.domain.generator.DomainGenerator` and the share
            of batch positions it fills (drawn per position from the batch's seeded stream).
        rank, world_size: this process in DDP.
        tissue: add the ``tissue`` key (for ``TrainConfig.tissue_weight``); cases without tissue classes
            (files of the collection) give 0 = unknown everywhere.
        case_weights: optional non-negative weight per case (e.g. Multi-Talent's ``1/sqrt(dataset size)``).
            With ``sampling="case"`` a case is drawn with probability ``w_i / sum(w)``; with ``task`` or
            ``dataset`` the group is still drawn uniformly (the balance the option asks for) and the case
            within it with probability proportional to its weight. None keeps the uniform draws (and the
            exact random streams of unweighted runs). Foreground oversampling is unaffected.
    """

    def __init__(self, cases: Sequence[PreparedCase], modalities: Sequence[str], patch_size: Sequence[int],
                 batch_size: int, ds_scales: Sequence[Sequence[float]] | None, *, oversample_foreground: float = 0.33,
                 augmentation: bool = True, intensity_shift: float = 0.0, sampling: str = "case", seed: int = 0,
                 rank: int = 0, world_size: int = 1, case_weights: Sequence[float] | None = None, generator=None,
                 generated_fraction: float = 0.0, tissue: bool = False):
        self.cases = list(cases)
        self.modalities = list(modalities)
        self.modality_index = {m: i for i, m in enumerate(self.modalities)}
        missing = sorted({c.case.modality for c in self.cases} - set(self.modality_index))
        if missing:
            raise ValueError(f"cases of modalities {missing} have no expert in {self.modalities}")
        self.patch_size = [int(p) for p in patch_size]
        self.batch_size = int(batch_size)
        self.oversample = float(oversample_foreground)
        self.augmentation = bool(augmentation)
        self.seed = int(seed)
        self.positions = rank_positions(self.batch_size, rank, world_size)
        self.rank = int(rank)
        self.crop_size = initial_patch_size(self.patch_size, self.augmentation)
        self.transform = training_transforms(self.patch_size, ds_scales, self.augmentation,
                                             intensity_shift=intensity_shift)
        self.tissue = bool(tissue)
        self.generator = generator
        self.generated_fraction = float(generated_fraction) if generator is not None else 0.0
        self.groups = _groups(self.cases, sampling) if self.cases else []
        self.group_p = None
        if case_weights is not None:
            if sampling == "case":  # one group of all cases: the weights alone decide
                self.groups = [list(range(len(self.cases)))]
            self.group_p = _group_probabilities(self.groups, case_weights, len(self.cases))

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        seed = np.random.SeedSequence([self.seed, int(epoch), int(index), self.rank])
        rng = np.random.default_rng(seed)
        samples = [self._sample(pos, rng) for pos in self.positions]
        images = torch.stack([s[0] for s in samples])
        levels = len(samples[0][1])
        targets = [torch.stack([s[1][level] for s in samples]) for level in range(levels)]
        cases = [s[2] for s in samples]
        extra = {"tissue": torch.stack([s[3] for s in samples])} if self.tissue else {}
        return {
            "image": images,
            "target": targets,
            "modality": torch.tensor([self.modality_index[c.modality] for c in cases], dtype=torch.int64),
            "case_id": [c.id for c in cases],
            "modality_name": [c.modality for c in cases],
            "dataset": [c.dataset for c in cases],
            "task": [c.task for c in cases],
            "lesion_type": [c.lesion_type for c in cases],
            **extra,
        }

    def draw_case(self, rng: np.random.Generator) -> int:
        """The index of the case one batch position uses (group, then case in it; weighted if configured)."""
        g = int(rng.integers(len(self.groups)))
        group = self.groups[g]
        if self.group_p is None:
            return group[int(rng.integers(len(group)))]
        return group[int(np.searchsorted(self.group_p[g], rng.random(), side="right"))]

    def _sample(self, position: int, rng: np.random.Generator):
        if self.generated_fraction > 0 and (not self.cases or rng.random() < self.generated_fraction):
            # a domain-randomised volume of one of the member's modalities (mome.data.domain)
            prepared = self.generator.sample(rng, self.modalities[int(rng.integers(len(self.modalities)))])
        else:
            prepared = self.cases[self.draw_case(rng)]
        force_fg = forced_foreground(position, self.batch_size, self.oversample)
        image, seg = crop_patch(prepared, self.crop_size, force_fg, rng, tissue=self.tissue)
        # batchgeneratorsv2 draws from the global torch and NumPy generators: seed them from this sample's
        # stream inside a fork so that the caller's random state is left untouched
        sample_seed = int(rng.integers(2**31 - 1))
        np_state = np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed)
            np.random.seed(sample_seed)
            try:
                seg = torch.from_numpy(seg if self.tissue else seg[None])
                out = self.transform(image=torch.from_numpy(image[None]), segmentation=seg)
            finally:
                np.random.set_state(np_state)
        target = out["segmentation"]
        if not isinstance(target, (list, tuple)):
            target = [target]
        tissue = target[0][1:2].to(torch.int16) if self.tissue else None
        target = [t[:1].to(torch.int16) for t in target]
        return out["image"].float().contiguous(), target, prepared.case, tissue


def crop_patch(prepared: PreparedCase, size: Sequence[int], force_foreground: bool,
               rng: np.random.Generator, tissue: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Cut a ``size`` patch (image float32, label int16), padded with 0 / -1 where it leaves the volume.

    With ``tissue`` the label is (2, *size): the lesion label, then the tissue classes (0 where unknown).

    The lower corner ranges as in nnU-Net's ``get_bbox``: when the volume is smaller than the patch the
    patch may extend beyond it symmetrically; with ``force_foreground`` the patch is centred on a random
    lesion voxel (clipped to the allowed range; a random location when the case has no lesion).
    """
    shape = np.asarray(prepared.image.shape)
    size = np.asarray(size)
    need = np.maximum(size - shape, 0)
    lower_bound = -(need // 2)
    upper_bound = shape + need // 2 + need % 2 - size
    if force_foreground and len(prepared.foreground):
        centre = prepared.foreground[int(rng.integers(len(prepared.foreground)))]
        lower = np.clip(centre - size // 2, lower_bound, upper_bound)
    else:
        lower = np.array([int(rng.integers(lo, hi + 1)) for lo, hi in zip(lower_bound, upper_bound)])
    upper = lower + size
    src = tuple(slice(max(lo, 0), min(hi, n)) for lo, hi, n in zip(lower, upper, shape))
    dst = tuple(slice(s.start - lo, s.stop - lo) for s, lo in zip(src, lower))
    image = np.zeros(tuple(size), dtype=np.float32)
    seg = np.full(tuple(size), -1, dtype=np.int16)
    image[dst] = prepared.image[src]
    seg[dst] = prepared.label[src]
    if tissue:
        classes = np.zeros(tuple(size), dtype=np.int16)
        if prepared.tissue is not None:
            classes[dst] = prepared.tissue[src]
        seg = np.stack([seg, classes])
    return image, seg


def _group_probabilities(groups: list[list[int]], weights: Sequence[float], n: int) -> list[np.ndarray]:
    """Per group, the cumulative probabilities of its cases (weights normalised within the group)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"case_weights has {w.size} entries for {n} cases")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("case_weights must be finite and non-negative")
    out = []
    for group in groups:
        gw = w[group]
        if gw.sum() <= 0:
            raise ValueError(f"every case of a sampling group has weight 0 (cases {group[:5]}...)")
        cdf = np.cumsum(gw)
        cdf /= cdf[-1]  # exactly 1 from the last positive weight on: rng.random() < 1 never picks a 0 weight
        out.append(cdf)
    return out


def _groups(cases: Sequence[PreparedCase], sampling: str) -> list[list[int]]:
    """Indices of cases grouped for drawing: one group per case, task or dataset."""
    if sampling == "case":
        return [[i] for i in range(len(cases))]
    key = (lambda c: c.task) if sampling == "task" else (lambda c: c.dataset)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(cases):
        groups[key(c.case)].append(i)
    return [groups[k] for k in sorted(groups)]

