"""Train a registered system into a run folder: resolve configs, plan members, train each with Lightning.

Resuming: rerunning the same command on an unfinished run folder skips finished members and continues
the interrupted one from ``checkpoints/last.ckpt`` (written atomically after every epoch), so the run
ends with the same number of optimizer steps as an uninterrupted one. That checkpoint is a pickle
(Lightning's format: weights, optimizer, scheduler, loop and callback state); loading it is acceptable
because it is our own file in the user's own run folder. Weights given by users (stage-1 experts) are
only ever read from safetensors model folders.

DDP: ``torchrun --nproc_per_node=N -m mome.cli.main train ...`` (CPU: gloo, GPU: nccl; one process
per GPU). ``batch_size`` is the global batch, split over the processes as nnU-Net splits it. Every
process runs the same command; only global rank 0 writes to the run folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from mome.data.collection import Collection, load_collection
from mome.errors import CheckpointError, ConfigError, DataError, MomeError, TrainingInterrupted
from mome.model.config import MoMEConfig, config_from_dict, config_to_dict
from mome.training.config import TrainConfig, get_train_config
from mome.training.run_folder import (CHECKPOINT, RUN_FILE, STATUS_FILE, clear_member, field_defaults, is_rank_zero,
                                      member_state, prepare_run_folder, read_json, write_json)
from mome.training.systems import Member, PlanContext, SystemOptions, SystemSpec, get_system
from mome.utils.signals import deferred


def resolve(spec: SystemSpec, collection: Collection, preset: str | None, overrides: dict, model_overrides: dict,
            options: SystemOptions) -> PlanContext:
    """The plan context: training config and architecture from preset, system defaults and user overrides."""
    experts_record = None
    if spec.needs_experts:
        if not options.experts:
            raise ConfigError(f"system {spec.name!r} starts from stage-1 experts: pass --experts RUN (the output "
                              "folder of `mome train experts`)")
        experts_record = read_experts_run(Path(options.experts))
    base_preset = preset or (experts_record["preset"] if experts_record else "paper")
    config = (get_train_config(base_preset, spec.schedule).replace(**spec.train_defaults)
              .replace(**spec.preset_defaults.get(base_preset, {})).replace(**overrides))
    if experts_record:
        model_config = config_from_dict(experts_record["model_config"])
        config = config.replace(model=experts_record["train_config"]["model"])
        if config.spacing_mm is None:
            config = config.replace(spacing_mm=experts_record["train_config"]["spacing_mm"])
    else:
        from mome.model.presets import get_preset_config

        model_config = get_preset_config(config.model)
    model_config = model_config.replace(**spec.model_defaults)
    model_overrides = {k: v for k, v in model_overrides.items() if v is not None}
    if "modalities" in model_overrides:
        model_overrides["modalities"] = _canonical_modalities(model_overrides["modalities"])
        if experts_record:
            unknown = [m for m in model_overrides["modalities"] if m not in model_config.modalities]
            if unknown:
                raise ConfigError(f"no stage-1 expert for modalities {unknown}; the experts run has "
                                  f"{model_config.modalities}")
    model_config = model_config.replace(**model_overrides)
    _check_patch(config, model_config)
    folders = {}
    if experts_record:
        root = Path(options.experts)
        for m in model_config.modalities:
            folder = root / "experts" / m / options.expert_weights
            if not (folder / "model.safetensors").is_file():
                raise CheckpointError(f"missing stage-1 expert checkpoint for {m}: {folder} has no weights (did "
                                      f"`mome train experts` finish for {m}?)")
            folders[m] = folder
    return PlanContext(collection, config, model_config, options, folders)


def read_experts_run(folder: Path) -> dict:
    """The ``run.json`` of a stage-1 run; raises :class:`CheckpointError` when it is not one."""
    record = read_json(folder / RUN_FILE) if (folder / RUN_FILE).is_file() else None
    if record is None:
        raise CheckpointError(f"{folder} is not a training run folder (no {RUN_FILE}); pass the --out folder of "
                              "`mome train experts`")
    if record.get("system") != "experts":
        raise CheckpointError(f"{folder} holds a {record.get('system')!r} run, not stage-1 experts")
    return record


def train_system(name: str, collection: Collection | str | os.PathLike, out: str | os.PathLike, *,
                 preset: str | None = None, overrides: dict | None = None, model_overrides: dict | None = None,
                 options: SystemOptions | None = None, overwrite: bool = False, accelerator: str = "auto",
                 progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Train system ``name`` (see :mod:`mome.training.systems`) and return the run folder.

    Args:
        name: a registered system (``experts``, ``mome``, ``single``, ``task-specific``, ...).
        collection: a collection or its manifest path.
        out: the run folder.
        preset: training preset (``tiny``, ``cpu``, ``paper``); default: the experts run's, else ``paper``.
        overrides: TrainConfig fields to change (None values are ignored).
        model_overrides: MoMEConfig fields (``modalities``, ``gate_type``, ``gate_activation``).
        options: :class:`SystemOptions` (``experts`` folder, ``reinit_expert_heads``...).
        overwrite: replace a finished or different run in ``out``.
        accelerator: Lightning's ``auto``, ``cpu`` or ``gpu`` (one device per process; see DDP above).
        progress: show Lightning's progress bar.
        log: where one-line status messages go.

    Raises:
        DataError: an empty collection, a modality without training cases, unreadable cases.
        CheckpointError: missing or incompatible stage-1 experts.
        OutputExistsError: ``out`` holds a finished run (without ``overwrite``).
        ConfigError: unknown names or inconsistent settings.
    """
    spec = get_system(name)
    options = options or SystemOptions()
    if not is_rank_zero():
        log = _silent
    if not isinstance(collection, Collection):
        collection = load_collection(collection)
    if not collection.cases:
        raise DataError(f"collection {collection.name!r} has no cases")
    ctx = resolve(spec, collection, preset, overrides or {}, model_overrides or {}, options)
    training = ctx.training_cases(seen=None)
    if not training:
        raise DataError(f"collection {collection.name!r} has no training cases (split 'train') of the modalities "
                        f"{', '.join(ctx.model_config.modalities)}")
    from mome.data.validate import find_problems, problems_error

    # every training file's header before the run folder is touched (voxels are read in the data loader)
    problems = find_problems(Collection(collection.name, training), check_label_values=False)
    if problems:
        raise problems_error(f"cannot train on {collection.name!r}", problems)
    if ctx.config.spacing_mm is None:
        from mome.training.data import training_spacing

        ctx.config = ctx.config.replace(spacing_mm=training_spacing(ctx.training_cases(seen=None)))
    members = spec.plan(ctx)
    out = Path(out)
    fingerprint = {
        "system": spec.name, "train_config": ctx.config.to_dict(), "model_config": config_to_dict(ctx.model_config),
        "options": options.to_dict(), "members": {m.key: _cases_digest(m) for m in members},
    }
    fresh = overwrite or not out.exists() or (out.is_dir() and not any(out.iterdir()))
    prepare_run_folder(out, fingerprint, overwrite, _fingerprint_defaults(ctx))
    record = {"system": spec.name, "description": spec.description, "preset": preset or ctx.config.model,
              "train_config": ctx.config.to_dict(), "model_config": config_to_dict(ctx.model_config),
              "options": options.to_dict(), "members": [m.key for m in members], "collection": collection.name,
              "fingerprint": fingerprint, "finished": False}
    write_json(out / RUN_FILE, record)
    log(f"{spec.name}: {len(members)} network(s) to train into {out}")
    try:
        for index, member in enumerate(members):
            train_member(out, spec, ctx, member, index, fingerprint, accelerator=accelerator, overwrite=overwrite,
                         progress=progress, log=log)
    except BaseException:
        # a run that failed before its first complete epoch leaves nothing to resume: remove what it wrote
        if fresh and is_rank_zero() and not any(out.rglob(CHECKPOINT.name)):
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        raise
    write_json(out / RUN_FILE, {**record, "finished": True})
    log(f"{spec.name}: finished; run folder {out}")
    return out


def _fingerprint_defaults(ctx: PlanContext) -> dict:
    """The fingerprint's fields at their defaults: a field added after a run was started does not block resuming
    it while it keeps its default (:func:`mome.training.run_folder.differences`)."""
    return {"train_config": field_defaults(TrainConfig), "model_config": field_defaults(type(ctx.model_config)),
            "options": field_defaults(SystemOptions)}


def train_member(out: Path, spec: SystemSpec, ctx: PlanContext, member: Member, index: int, fingerprint: dict, *,
                 accelerator: str, overwrite: bool, progress: bool, log: Callable[[str], None]) -> None:
    """Train (or resume, or skip when finished) one member network into its folder."""
    import lightning as L

    from mome.training.callbacks import EpochLog
    from mome.training.datamodule import PatchDataModule
    from mome.training.module import TrainingModule
    from mome.utils.provenance import provenance, seed_everything
    from mome.weights.store import save_model

    folder = out / member.key if member.key else out
    config = ctx.config.replace(seed=ctx.config.seed + index)
    member_fp = {**fingerprint, "member": member.key, "seed": config.seed}
    # with --overwrite rank 0 has just deleted the folder: every process must start fresh, whatever it read
    state = "fresh" if overwrite else member_state(folder, member_fp, _fingerprint_defaults(ctx))
    label = member.key or spec.name
    if state == "finished":
        log(f"{label}: already finished, skipped")
        return
    if state == "fresh":
        clear_member(folder, is_run_root=not member.key)
    n = len(member.cases)
    log(f"{label}: {'resuming' if state == 'resume' else 'training'} on {n} case(s), {config.epochs} epochs x "
        f"{config.iterations_per_epoch} iterations, batch {config.batch_size}, patch {config.patch_size} -> {folder}")
    write_json(folder / "run_config.json", {
        "system": spec.name, "member": member.key, "fingerprint": member_fp, "train_config": config.to_dict(),
        "model_config": config_to_dict(ctx.model_config), "modalities": member.modalities, "info": member.info,
        "cases": [c.id for c in member.cases]})
    write_json(folder / "provenance.json", provenance(seed=config.seed, command=sys.argv, system=spec.name,
                                                       member=member.key))
    seed_everything(config.seed)
    network = member.build()
    metadata = {"patch_size": config.patch_size, "spacing_mm": config.spacing_mm, "modalities": member.modalities,
                "system": spec.name, "member": member.key, "train_config": config.to_dict(), **member.info}

    def save(net, path, meta):
        save_model(net, path, overwrite=True, metadata=meta)

    epoch_log = EpochLog(folder, list(member.objective.term_names) + member.objective.columns(),
                         member.objective.monitor, config.best_ema, save, metadata)
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=folder / CHECKPOINT.parent, filename=CHECKPOINT.stem, monitor=None, save_top_k=1, save_last=False,
        every_n_epochs=1, save_on_train_epoch_end=True, enable_version_counter=False)
    with _quiet_lightning():
        trainer = L.Trainer(max_epochs=config.epochs, precision=config.precision, logger=False,
                            callbacks=[epoch_log, checkpoint], enable_model_summary=False, num_sanity_val_steps=0,
                            use_distributed_sampler=False, default_root_dir=str(folder),
                            enable_progress_bar=progress, log_every_n_steps=1, benchmark=False,
                            **_topology(accelerator, _may_leave_parameters_unused(network, member, config)))
    data = PatchDataModule(member.cases, member.modalities, config, ctx.model_config.expert.stride_triples(),
                           case_weights=member.case_weights)
    module = TrainingModule(network, member.objective, config)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # num_workers=0 is a deliberate default here (see TrainConfig.num_workers)
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
        try:
            with deferred():  # Lightning's SIGTERM handler stops at the next step and keeps the checkpoint
                trainer.fit(module, datamodule=data,
                            ckpt_path=str(folder / CHECKPOINT) if state == "resume" else None)
        except L.pytorch.utilities.exceptions.SIGTERMException as exc:
            # Lightning stops at the next step and raises a SystemExit without a code (exit status 0):
            # make it an error that says how to continue
            raise TrainingInterrupted(
                f"{label}: stopped by SIGTERM after {trainer.global_step} optimizer steps; {folder / CHECKPOINT} "
                f"holds the last complete epoch: run the same command again to resume") from exc
    expected = config.epochs * config.iterations_per_epoch
    if trainer.global_step != expected:
        raise MomeError(f"{label}: training stopped after {trainer.global_step} of {expected} optimizer steps")
    if trainer.is_global_zero:
        save(network, folder / "final", {**metadata, "epoch": config.epochs - 1, "optimizer_steps": expected})
        write_json(folder / STATUS_FILE, {
            "finished": True, "optimizer_steps": int(trainer.global_step), "epochs": config.epochs,
            "resumed": state == "resume", "seconds_this_process": time.perf_counter() - t0,
            "best_epoch": epoch_log.best_epoch, "best_monitor_ema": epoch_log.best, "monitor": epoch_log.monitor})
    trainer.strategy.barrier("member-finished")
    log(f"{label}: done ({trainer.global_step} optimizer steps); weights in {folder / 'final'} and {folder / 'best'}")


@contextlib.contextmanager
def _quiet_lightning():
    """Hide Lightning's start-up banner (device lines and an advertisement); warnings still show."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch.utilities.rank_zero",
                                               "lightning.fabric.utilities.rank_zero")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _may_leave_parameters_unused(network, member: Member, config: TrainConfig) -> bool:
    """Whether DDP must search for parameters without gradient: the basic gate never uses its gate
    U-Net's low-resolution heads, and without deep supervision no network uses its own."""
    from mome.model.gating import BasicGate

    return (member.objective.ddp_find_unused_parameters or not config.deep_supervision
            or any(isinstance(m, BasicGate) for m in network.modules()))


def _topology(accelerator: str, find_unused_parameters: bool = False) -> dict:
    """Trainer arguments for one process or for a torchrun launch (one device per process)."""
    from lightning.pytorch.strategies import DDPStrategy

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if "TORCHELASTIC_RUN_ID" in os.environ and world > 1:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        accel = accelerator if accelerator != "auto" else ("gpu" if _cuda() else "cpu")
        backend = "nccl" if accel == "gpu" else "gloo"
        return {"accelerator": accel, "devices": local, "num_nodes": world // local,
                "strategy": DDPStrategy(process_group_backend=backend,
                                        find_unused_parameters=find_unused_parameters)}
    return {"accelerator": accelerator, "devices": 1}


def _silent(message: str) -> None:
    """Status messages of processes other than rank 0 are dropped."""


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _check_patch(config: TrainConfig, model_config: MoMEConfig) -> None:
    div = model_config.expert.divisor()
    bad = [p for p, d in zip(config.patch_size, div) if p % d]
    if bad:
        raise ConfigError(f"patch size {config.patch_size} is not a multiple of the network's divisor {list(div)} "
                          f"(model preset {config.model!r}); e.g. use "
                          f"{[max(d, (p // d) * d) for p, d in zip(config.patch_size, div)]}")


def _canonical_modalities(mods) -> list[str]:
    from mome.data.constants import canonical_modality

    if isinstance(mods, str):
        mods = [m for m in mods.split(",") if m.strip()]
    return [canonical_modality(m) for m in mods]


def _cases_digest(member: Member) -> str:
    ids = "\n".join(sorted(c.id for c in member.cases))
    return f"{len(member.cases)}:{hashlib.sha256(ids.encode()).hexdigest()[:16]}"
