"""The registry of trainable systems: MoME's two stages, its ablations and the baselines, by name.

A *system* turns a collection, a training config and an architecture into one or more *members*:
networks trained one after the other, each in its own run folder (the experts of stage 1, the
task-specific U-Nets) or in the run folder itself (MoME, the single U-Net).

Built in (paper Tables 1-3; the ablations remove MoME's contributions cumulatively, as Table 3 does):

=================  ========  ==========================================================================
name               schedule  what is trained
=================  ========  ==========================================================================
``experts``        pretrain  stage 1: one U-Net per modality on all training images of that modality
``mome``           joint     stage 2: MoME from the stage-1 experts, fresh hierarchical gate, eq. 2
``no-curriculum``  joint     stage 2 with eq. 4 (fused loss only)
``basic-gate``     joint     stage 2 with the basic gate and eq. 4
``random-experts`` joint     stage 2 from random experts, basic gate, eq. 4
``single``         scratch   one U-Net on every training image (the paper's "nnU-Net" foundation model)
``task-specific``  scratch   one U-Net per task (dataset x modality), unseen datasets' train cases too
=================  ========  ==========================================================================

Options (``--gate-type``, ``--gate-activation``, ``--curriculum/--no-curriculum``) override a system's
defaults, so any combination of the three factors can be trained.

Adding a system (e.g. a baseline with its own network and loss)::

    from mome.training.systems import Member, SystemSpec, register_system

    def plan_multitalent(ctx):            # ctx: PlanContext (collection, config, model_config, options)
        cases = ctx.training_cases(seen=True)
        net_config = ...                  # a config class registered with mome.model.register_builder
        return [Member(key="", cases=cases, modalities=ctx.model_config.modalities,
                       build=lambda: build_model(net_config),
                       objective=MyObjective(ctx.config, ...))]   # a mome.training.objectives.Objective

    register_system(SystemSpec("multitalent", "one head per dataset", "scratch", plan_multitalent))

The batch an objective receives carries, per sample, the modality index and the names of the case,
modality, dataset, task and lesion type (see :class:`mome.training.sampling.PatchBatches`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from mome.data.collection import Case, Collection
from mome.errors import CheckpointError, ConfigError, DataError
from mome.model.config import MoMEConfig
from mome.training.config import TrainConfig
from mome.training.objectives import MoMEObjective, Objective, SegmentationObjective


@dataclass
class SystemOptions:
    """System-level choices that are not training hyperparameters.

    Attributes:
        experts: stage-1 run folder (``mome train experts --out``) for systems built from experts.
        expert_weights: which stage-1 weights to start from: ``final`` or ``best``.
        reinit_expert_heads: re-initialise the experts' output heads after loading (the released code).
    """

    experts: str | None = None
    expert_weights: str = "final"
    reinit_expert_heads: bool = False

    def __post_init__(self) -> None:
        if self.expert_weights not in ("final", "best"):
            raise ConfigError(f"expert weights must be 'final' or 'best', got {self.expert_weights!r}")

    def to_dict(self) -> dict:
        return {"experts": None if self.experts is None else str(Path(self.experts).resolve()),
                "expert_weights": self.expert_weights, "reinit_expert_heads": self.reinit_expert_heads}


@dataclass
class PlanContext:
    """What a system's plan function gets.

    Attributes:
        collection: the whole collection (plans pick their cases).
        config: the resolved training config (preset, system defaults, then user overrides).
        model_config: the resolved architecture (modalities = expert order).
        options: system options.
        expert_folders: modality -> stage-1 model folder (only for systems built from experts).
    """

    collection: Collection
    config: TrainConfig
    model_config: MoMEConfig
    options: SystemOptions
    expert_folders: dict[str, Path] = field(default_factory=dict)

    def training_cases(self, seen: bool | None = True, modality: str | None = None) -> list[Case]:
        """Training cases (split ``train``) of the model's modalities, optionally of one modality."""
        mods = set(self.model_config.modalities)
        return [c for c in self.collection.filter(split="train", seen=seen, modality=modality).cases
                if c.modality in mods]


@dataclass
class Member:
    """One network to train.

    Attributes:
        key: folder relative to the run folder ("" = the run folder itself).
        cases: its training cases.
        modalities: modality vocabulary of its batches (index = MoME expert).
        build: returns the freshly initialised (or expert-loaded) network; called after seeding.
        objective: the loss and statistics.
        info: facts saved with its weights (datasets, tasks...).
        case_weights: optional patch-sampling weight per case (same order as ``cases``); None = the
            config's uniform sampling. With ``TrainConfig.sampling`` ``task`` or ``dataset`` the group is
            still drawn uniformly and the weights choose the case within it
            (see :class:`mome.training.sampling.PatchBatches`).
    """

    key: str
    cases: list[Case]
    modalities: list[str]
    build: Callable[[], nn.Module]
    objective: Objective
    info: dict = field(default_factory=dict)
    case_weights: list[float] | None = None

    def __post_init__(self) -> None:
        if self.case_weights is not None and len(self.case_weights) != len(self.cases):
            raise ConfigError(f"member {self.key!r}: {len(self.case_weights)} case weights for "
                              f"{len(self.cases)} cases")


@dataclass
class SystemSpec:
    """A registered system.

    Attributes:
        name: CLI name.
        description: one line for ``mome train list``.
        schedule: training preset schedule (``pretrain``, ``scratch``, ``joint``).
        plan: ``PlanContext -> list[Member]``.
        needs_experts: requires ``--experts`` (a stage-1 run).
        train_defaults: TrainConfig fields this system sets (before the user's overrides).
        model_defaults: MoMEConfig fields this system sets (before the user's overrides).
        preset_defaults: training preset name -> TrainConfig fields this system sets for that preset
            (after ``train_defaults``, before the user's overrides; e.g. SAM-Med3D's crop size).
    """

    name: str
    description: str
    schedule: str
    plan: Callable[[PlanContext], list[Member]]
    needs_experts: bool = False
    train_defaults: dict = field(default_factory=dict)
    model_defaults: dict = field(default_factory=dict)
    preset_defaults: dict[str, dict] = field(default_factory=dict)


SYSTEMS: dict[str, SystemSpec] = {}


def register_system(spec: SystemSpec) -> SystemSpec:
    """Add a system to :data:`SYSTEMS` (names are unique)."""
    if spec.name in SYSTEMS:
        raise ConfigError(f"system {spec.name!r} is already registered")
    SYSTEMS[spec.name] = spec
    return spec


def get_system(name: str) -> SystemSpec:
    if name not in SYSTEMS:
        raise ConfigError(f"unknown system {name!r}; known systems: {', '.join(SYSTEMS)}")
    return SYSTEMS[name]


# --- built-in plans -------------------------------------------------------------------------------

def _unet_member(ctx: PlanContext, key: str, cases: list[Case], **info) -> Member:
    from mome.model.experts import ExpertUNet

    expert = ctx.model_config.expert
    return Member(key=key, cases=cases, modalities=sorted({c.modality for c in cases}),
                  build=lambda: ExpertUNet(expert), objective=SegmentationObjective(ctx.config, expert.n_levels()),
                  info={"datasets": sorted({c.dataset for c in cases}), "tasks": sorted({c.task for c in cases}),
                        **info})


def plan_experts(ctx: PlanContext) -> list[Member]:
    members = []
    for modality in ctx.model_config.modalities:
        cases = ctx.training_cases(seen=True, modality=modality)
        if not cases:
            raise DataError(f"collection {ctx.collection.name!r} has no training case (split=train, seen) of "
                            f"modality {modality}; every expert needs its modality's images. Restrict the "
                            f"experts with --modalities (e.g. --modalities "
                            f"{','.join(m for m in ctx.model_config.modalities if m != modality)})")
        members.append(_unet_member(ctx, f"experts/{modality}", cases, expert=modality))
    return members


def plan_single(ctx: PlanContext) -> list[Member]:
    cases = ctx.training_cases(seen=True)
    if not cases:
        raise DataError(f"collection {ctx.collection.name!r} has no training case (split=train, seen) of the "
                        f"modalities {', '.join(ctx.model_config.modalities)}")
    return [_unet_member(ctx, "", cases)]


def plan_task_specific(ctx: PlanContext) -> list[Member]:
    cases = ctx.training_cases(seen=None)
    tasks = sorted({(c.dataset, c.modality) for c in cases})
    if not tasks:
        raise DataError(f"collection {ctx.collection.name!r} has no training case (split=train) of the "
                        f"modalities {', '.join(ctx.model_config.modalities)}")
    return [_unet_member(ctx, f"tasks/{_safe(d)}_{_safe(m)}",
                         [c for c in cases if (c.dataset, c.modality) == (d, m)], task=f"{d}/{m}")
            for d, m in tasks]


def plan_mome(ctx: PlanContext, from_experts: bool = True) -> list[Member]:
    cases = ctx.training_cases(seen=True)
    modalities = list(ctx.model_config.modalities)
    present = {c.modality for c in cases}
    missing = [m for m in modalities if m not in present]
    if not cases or missing:
        raise DataError(f"collection {ctx.collection.name!r} has no training case (split=train, seen) of "
                        f"modality {', '.join(missing or modalities)}; MoME trains every expert on its modality "
                        "(restrict the experts with --modalities)")
    model_config = ctx.model_config
    folders = dict(ctx.expert_folders)
    reinit = ctx.options.reinit_expert_heads

    def build() -> nn.Module:
        from mome.model.mome import MoME

        model = MoME(model_config)
        if from_experts:
            load_experts(model, folders, reinit_heads=reinit)
        return model

    info = {"datasets": sorted({c.dataset for c in cases}), "tasks": sorted({c.task for c in cases}),
            "experts_from": "random initialisation" if not from_experts else
            {m: str(folders[m]) for m in modalities}}
    return [Member(key="", cases=cases, modalities=modalities, build=build,
                   objective=MoMEObjective(ctx.config, model_config.expert.n_levels(), modalities), info=info)]


def load_experts(model: nn.Module, folders: dict[str, Path], reinit_heads: bool = False) -> None:
    """Copy stage-1 experts (model folders, one per modality) into ``model.experts``, output heads included.

    Args:
        model: a :class:`~mome.model.mome.MoME`.
        folders: modality -> model folder of an ``ExpertUNet``.
        reinit_heads: re-initialise every expert's output heads afterwards (He init, as the released code
            effectively did by not loading them).

    Raises:
        CheckpointError: a missing folder, or an expert whose architecture differs from the MoME's.
    """
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    from mome.model.experts import ExpertUNet
    from mome.weights.store import load_model

    for i, modality in enumerate(model.config.modalities):
        folder = folders.get(modality)
        if folder is None:
            raise CheckpointError(f"no stage-1 expert for modality {modality}")
        expert = load_model(folder)
        if not isinstance(expert, ExpertUNet) or expert.config != model.config.expert:
            raise CheckpointError(f"the expert in {folder} does not have the MoME's expert architecture "
                                  f"({model.config.expert})")
        model.experts[i].load_state_dict(expert.state_dict())
        if reinit_heads:
            model.experts[i].decoder.seg_layers.apply(PlainConvUNet.initialize)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


register_system(SystemSpec("experts", "stage 1: one expert U-Net per modality on all training images of it",
                           "pretrain", plan_experts))
register_system(SystemSpec("mome", "stage 2: MoME from the stage-1 experts, hierarchical gate, curriculum (eq. 2)",
                           "joint", plan_mome, needs_experts=True))
register_system(SystemSpec("no-curriculum", "ablation: MoME from the experts without curriculum (eq. 4)",
                           "joint", plan_mome, needs_experts=True, train_defaults={"curriculum": False}))
register_system(SystemSpec("basic-gate", "ablation: MoME from the experts, basic gate, no curriculum",
                           "joint", plan_mome, needs_experts=True, train_defaults={"curriculum": False},
                           model_defaults={"gate_type": "basic"}))
register_system(SystemSpec("random-experts", "ablation: MoME from random experts, basic gate, no curriculum",
                           "joint", lambda ctx: plan_mome(ctx, from_experts=False),
                           train_defaults={"curriculum": False}, model_defaults={"gate_type": "basic"}))
register_system(SystemSpec("single", "baseline: one U-Net trained on every training image (paper's nnU-Net)",
                           "scratch", plan_single))
register_system(SystemSpec("task-specific", "baseline: one U-Net per dataset x modality (unseen datasets too)",
                           "scratch", plan_task_specific))

# the Multi-Talent, Hermes and SAM-Med3D baselines register themselves (multitalent, hermes, sam-med3d)
import mome.training.baselines  # noqa: E402,F401
import mome.training.interactive  # noqa: E402,F401
