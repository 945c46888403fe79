"""The Lightning data module: prepared volumes -> reproducible patch batches for this DDP process."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
from torch.utils.data import DataLoader

from mome.data.collection import Case
from mome.training.augment import deep_supervision_scales
from mome.training.config import TrainConfig
from mome.training.data import PreparedCase, load_cases
from mome.training.sampling import EpochSampler, PatchBatches


class PatchDataModule(L.LightningDataModule):
    """Loads the cases once per process (in :meth:`setup`, i.e. after DDP processes exist) and serves
    :class:`PatchBatches` through a ``DataLoader`` driven by an :class:`EpochSampler`.

    Args:
        cases: training cases.
        modalities: the batch modality vocabulary (index = MoME expert).
        config: the training config (patch, batch, sampling, augmentation, spacing, seed, workers).
        strides: the network's per-stage strides (for the deep-supervision label scales).
        case_weights: optional sampling weight per case (see :class:`PatchBatches`); None = uniform.
    """

    def __init__(self, cases: Sequence[Case], modalities: Sequence[str], config: TrainConfig,
                 strides: Sequence[Sequence[int]], case_weights: Sequence[float] | None = None):
        super().__init__()
        self.cases = list(cases)
        self.modalities = list(modalities)
        self.config = config
        self.case_weights = None if case_weights is None else [float(w) for w in case_weights]
        self.ds_scales = deep_supervision_scales(strides) if config.deep_supervision else None
        self.prepared: list[PreparedCase] | None = None
        self.generator = None

    def setup(self, stage: str) -> None:
        if self.prepared is None:
            self.prepared = load_cases(self.cases, self.config.spacing_mm, self.config.cache_dir)
        if self.generator is None and self.config.domain_fraction > 0:
            self.generator = build_generator(self.config, self.modalities)

    def train_dataloader(self) -> DataLoader:
        cfg = self.config
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        # the epoch the fit loop will run first (after a checkpoint restore, the resumed one)
        epoch = trainer.fit_loop.epoch_progress.current.processed if trainer is not None else 0
        # without deep supervision only the full-resolution label is needed (scale 1)
        scales = self.ds_scales if self.ds_scales is not None else [[1.0, 1.0, 1.0]]
        dataset = PatchBatches(self.prepared, self.modalities, cfg.patch_size, cfg.batch_size, scales,
                               oversample_foreground=cfg.oversample_foreground, augmentation=cfg.augmentation,
                               intensity_shift=cfg.intensity_shift,
                               sampling=cfg.sampling, seed=cfg.seed, rank=rank, world_size=world,
                               case_weights=self.case_weights, generator=self.generator,
                               generated_fraction=cfg.domain_fraction, tissue=cfg.tissue_weight > 0)
        return DataLoader(dataset, sampler=EpochSampler(cfg.iterations_per_epoch, epoch), batch_size=None,
                          num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0,
                          worker_init_fn=_leave_stop_signals_to_the_trainer if cfg.num_workers > 0 else None)


def _leave_stop_signals_to_the_trainer(_worker_id: int) -> None:
    """DataLoader workers ignore SIGINT and SIGTERM: a scheduler (SLURM), ``pkill -f`` or Ctrl-C signals the
    whole process group, and a worker that dies first turns the trainer's clean, resumable stop at the next
    step into "DataLoader worker exited unexpectedly". The workers still end with the training process
    (PyTorch's workers watch their parent)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def build_generator(config: TrainConfig, modalities: Sequence[str]):
    """The domain-randomised generator of a config (label maps registered and cached on first use)."""
    from mome.data.domain.generator import DomainGenerator, GeneratorConfig
    from mome.data.domain.label_maps import load_label_maps, on_spacing
    from mome.data.domain.lesion_bank import LesionBank, load_lesion_bank
    from mome.errors import ConfigError

    spacing = config.spacing_mm or [2.0, 2.0, 2.0]
    if len(set(spacing)) != 1:
        raise ConfigError(f"the domain-randomised generator works on isotropic MNI grids; spacing_mm is {spacing}")
    s = float(spacing[0])
    maps = [on_spacing(m.labels, s) for m in load_label_maps(config.label_maps, 1.0)]
    if config.lesion_masks:
        bank = load_lesion_bank(config.lesion_masks, s)
    else:
        from mome.data.mni import mni_grid

        bank = LesionBank(tuple(mni_grid(s)[0]))
    return DomainGenerator(maps, bank, modalities=modalities, spacing_mm=s,
                           config=GeneratorConfig(p_no_lesion=float(config.domain_no_lesion),
                                                  p_random_contrast=float(config.domain_random_contrast)))
