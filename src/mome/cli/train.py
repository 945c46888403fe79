"""``mome train``: stage 1 (experts), stage 2 (MoME), and any registered system (ablations, baselines).

Examples::

    mome train experts --collection data/collection.json --preset cpu --out runs/experts
    mome train mome --collection data/collection.json --experts runs/experts --out runs/mome
    mome train system single --collection data/collection.json --preset cpu --out runs/single
    torchrun --nproc_per_node=2 -m mome.cli.main train mome ...   # DDP (CPU: gloo, GPU: nccl)

Rerunning a command on an unfinished run folder resumes it; a finished one is refused without
``--overwrite``. Heavy imports happen inside the commands.
"""

from pathlib import Path
from typing import Annotated, Optional

import typer

train_app = typer.Typer(help="Train MoME (stage 1 experts, stage 2 joint), its ablations and baselines.",
                        no_args_is_help=True)

CollectionOpt = Annotated[Path, typer.Option("--collection", "-c", help="collection manifest (collection.json)")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="run folder to create (or resume)")]
PresetOpt = Annotated[Optional[str], typer.Option(
    "--preset", help="training preset: tiny, cpu or paper (default: the experts run's, else paper)")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="random seed (default 0)")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="replace a finished or different run in --out")]
PrecisionOpt = Annotated[Optional[str], typer.Option("--precision", help="32, bf16-mixed or 16-mixed (GPU)")]
EpochsOpt = Annotated[Optional[int], typer.Option("--epochs", help="override the preset's epochs")]
ItersOpt = Annotated[Optional[int], typer.Option("--iterations", help="override iterations per epoch")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", help="override the global batch size")]
CkptOpt = Annotated[Optional[bool], typer.Option("--gradient-checkpointing/--no-gradient-checkpointing",
                                                 help="recompute activations in the backward pass: same "
                                                      "gradients, much less memory (docs/performance.md)")]
PatchOpt = Annotated[Optional[str], typer.Option("--patch-size", help="voxels: 64 or 64,64,48")]
LrOpt = Annotated[Optional[float], typer.Option("--lr", help="override the initial learning rate")]
ModalitiesOpt = Annotated[Optional[str], typer.Option(
    "--modalities", help="comma-separated experts/modalities (default: T1,T2,T1ce,FLAIR,DWI)")]
SamplingOpt = Annotated[Optional[str], typer.Option(
    "--sampling", help="draw patches uniformly over: case (nnU-Net), task or dataset")]
BalancedOpt = Annotated[bool, typer.Option("--balanced-sampling", help="same as --sampling task")]
AugmentOpt = Annotated[Optional[bool], typer.Option("--augmentation/--no-augmentation",
                                                    help="nnU-Net's augmentation (default on)")]
ClipOpt = Annotated[Optional[str], typer.Option(
    "--grad-clip", help="clip gradient norm 12 over: all (nnU-Net, default), gate (released MoME), none")]
WorkersOpt = Annotated[Optional[int], typer.Option("--num-workers", help="DataLoader workers (default 0)")]
LabelMapsOpt = Annotated[Optional[Path], typer.Option(
    "--label-maps", help="folder of real whole-head label maps (SynthSeg's) for the domain-randomised generator")]
LesionMasksOpt = Annotated[Optional[Path], typer.Option(
    "--lesion-masks", help="folder with ms_mni/ and/or stroke_mni/ real lesion masks (MNI) for the generator")]
DomainFractionOpt = Annotated[Optional[float], typer.Option(
    "--domain-fraction", help="share of patches drawn from the generator (default 0.5 with --label-maps)")]
DomainNoLesionOpt = Annotated[Optional[float], typer.Option(
    "--domain-no-lesion", help="share of generated volumes without a lesion (default 0.3)")]
DomainRandomOpt = Annotated[Optional[float], typer.Option(
    "--domain-random-contrast", help="share of generated volumes with fully random label intensities (default 0.15)")]
TissueOpt = Annotated[Optional[float], typer.Option(
    "--tissue-weight", help="weight of a training-only tissue-class loss on generated patches (default 0 = off)")]
ShiftOpt = Annotated[Optional[float], typer.Option(
    "--intensity-shift", help="SD of a random additive shift of half the patches' z-scored intensities (default 0)")]
OversampleOpt = Annotated[Optional[float], typer.Option(
    "--oversample-foreground", help="share of batch positions centred on a lesion voxel (nnU-Net: 0.33)")]
BatchDiceOpt = Annotated[Optional[bool], typer.Option(
    "--batch-dice/--sample-dice", help="one soft Dice over the whole batch, or one per sample (default)")]
DiceWeightOpt = Annotated[Optional[float], typer.Option(
    "--dice-weight", help="weight of the soft Dice term beside cross-entropy (nnU-Net: 1; 0 = cross-entropy only)")]
CacheOpt = Annotated[Optional[Path], typer.Option("--cache-dir", help="keep prepared volumes as .npy here")]
AccelOpt = Annotated[str, typer.Option(
    "--accelerator", help="auto, cpu or gpu (several processes: launch with torchrun --nproc_per_node=N)")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", help="torch CPU threads per process")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="show the progress bar")]
ExpertsOpt = Annotated[Optional[Path], typer.Option("--experts", help="stage-1 run folder (mome train experts)")]
ExpertWeightsOpt = Annotated[str, typer.Option("--expert-weights", help="start from the experts' final or best")]
ReinitOpt = Annotated[bool, typer.Option(
    "--reinit-expert-heads", help="re-initialise the experts' output heads (the released code's behaviour)")]
GateTypeOpt = Annotated[Optional[str], typer.Option("--gate-type", help="hierarchical or basic")]
GateActOpt = Annotated[Optional[str], typer.Option(
    "--gate-activation", help="identity (raw weights, released code) or softmax over experts")]
CurriculumOpt = Annotated[Optional[bool], typer.Option(
    "--curriculum/--no-curriculum", help="eq. 2 curriculum (default on for mome) or eq. 4")]


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")


@train_app.command("experts")
def experts(collection: CollectionOpt, out: OutOpt, preset: PresetOpt = None, seed: SeedOpt = None,
            overwrite: OverwriteOpt = False, precision: PrecisionOpt = None, epochs: EpochsOpt = None,
            iterations: ItersOpt = None, batch_size: BatchOpt = None, patch_size: PatchOpt = None, lr: LrOpt = None,
            modalities: ModalitiesOpt = None, sampling: SamplingOpt = None, balanced_sampling: BalancedOpt = False,
            augmentation: AugmentOpt = None, intensity_shift: ShiftOpt = None,
            oversample_foreground: OversampleOpt = None, batch_dice: BatchDiceOpt = None,
            dice_weight: DiceWeightOpt = None,
            grad_clip: ClipOpt = None, num_workers: WorkersOpt = None,
            cache_dir: CacheOpt = None, gradient_checkpointing: CkptOpt = None, accelerator: AccelOpt = "auto",
            threads: ThreadsOpt = None, progress: ProgressOpt = True, label_maps: LabelMapsOpt = None,
            lesion_masks: LesionMasksOpt = None, domain_fraction: DomainFractionOpt = None,
            domain_no_lesion: DomainNoLesionOpt = None,
            domain_random_contrast: DomainRandomOpt = None, tissue_weight: TissueOpt = None) -> None:
    """Stage 1: one expert U-Net per modality, each on all training images of its modality."""
    _train("experts", **locals())


@train_app.command("mome")
def mome(collection: CollectionOpt, out: OutOpt, experts: ExpertsOpt = None, preset: PresetOpt = None,
         seed: SeedOpt = None, overwrite: OverwriteOpt = False, precision: PrecisionOpt = None,
         epochs: EpochsOpt = None, iterations: ItersOpt = None, batch_size: BatchOpt = None,
         patch_size: PatchOpt = None, lr: LrOpt = None, modalities: ModalitiesOpt = None,
         sampling: SamplingOpt = None, balanced_sampling: BalancedOpt = False, augmentation: AugmentOpt = None,
         intensity_shift: ShiftOpt = None, oversample_foreground: OversampleOpt = None,
         batch_dice: BatchDiceOpt = None, dice_weight: DiceWeightOpt = None, grad_clip: ClipOpt = None,
         num_workers: WorkersOpt = None,
         cache_dir: CacheOpt = None,
         gradient_checkpointing: CkptOpt = None, accelerator: AccelOpt = "auto", threads: ThreadsOpt = None,
         progress: ProgressOpt = True, expert_weights: ExpertWeightsOpt = "final",
         reinit_expert_heads: ReinitOpt = False, gate_type: GateTypeOpt = None, gate_activation: GateActOpt = None,
         curriculum: CurriculumOpt = None, label_maps: LabelMapsOpt = None, lesion_masks: LesionMasksOpt = None,
         domain_fraction: DomainFractionOpt = None, domain_no_lesion: DomainNoLesionOpt = None,
         domain_random_contrast: DomainRandomOpt = None) -> None:
    """Stage 2: MoME from the stage-1 experts and a fresh gate, curriculum loss (eq. 2), LR 1e-3."""
    _train("mome", **locals())


@train_app.command("system")
def system(name: Annotated[str, typer.Argument(help="a system of `mome train list`")],
           collection: CollectionOpt, out: OutOpt, experts: ExpertsOpt = None, preset: PresetOpt = None,
           seed: SeedOpt = None, overwrite: OverwriteOpt = False, precision: PrecisionOpt = None,
           epochs: EpochsOpt = None, iterations: ItersOpt = None, batch_size: BatchOpt = None,
           patch_size: PatchOpt = None, lr: LrOpt = None, modalities: ModalitiesOpt = None,
           sampling: SamplingOpt = None, balanced_sampling: BalancedOpt = False, augmentation: AugmentOpt = None,
           intensity_shift: ShiftOpt = None, oversample_foreground: OversampleOpt = None,
         batch_dice: BatchDiceOpt = None, dice_weight: DiceWeightOpt = None, grad_clip: ClipOpt = None,
         num_workers: WorkersOpt = None,
           cache_dir: CacheOpt = None,
           gradient_checkpointing: CkptOpt = None, accelerator: AccelOpt = "auto", threads: ThreadsOpt = None,
           progress: ProgressOpt = True, expert_weights: ExpertWeightsOpt = "final",
           reinit_expert_heads: ReinitOpt = False, gate_type: GateTypeOpt = None, gate_activation: GateActOpt = None,
           curriculum: CurriculumOpt = None, label_maps: LabelMapsOpt = None, lesion_masks: LesionMasksOpt = None,
           domain_fraction: DomainFractionOpt = None, domain_no_lesion: DomainNoLesionOpt = None,
           domain_random_contrast: DomainRandomOpt = None, tissue_weight: TissueOpt = None) -> None:
    """Train any registered system by name (ablations: no-curriculum, basic-gate, random-experts;
    baselines: single, task-specific; and experts / mome)."""
    options = locals()
    _train(options.pop("name"), **options)


@train_app.command("list")
def list_systems() -> None:
    """List the registered systems and training presets."""
    from rich.console import Console
    from rich.table import Table

    from mome.training.config import PRESET_DESCRIPTIONS
    from mome.training.systems import SYSTEMS

    table = Table(title="trainable systems")
    for col in ("name", "schedule", "needs --experts", "description"):
        table.add_column(col)
    for spec in SYSTEMS.values():
        table.add_row(spec.name, spec.schedule, "yes" if spec.needs_experts else "", spec.description)
    console = Console()
    console.print(table)
    for name, text in PRESET_DESCRIPTIONS.items():
        console.print(f"preset [bold]{name}[/bold]: {text}")


def _train(name: str, collection: Path, out: Path, overwrite: bool, accelerator: str,
           threads: Optional[int], progress: bool, balanced_sampling: bool, modalities: Optional[str],
           patch_size: Optional[str], experts: Optional[Path] = None, expert_weights: str = "final",
           reinit_expert_heads: bool = False, gate_type: Optional[str] = None,
           gate_activation: Optional[str] = None, preset: Optional[str] = None, **train_options) -> None:
    from rich.console import Console

    from mome.errors import ConfigError
    from mome.training.stages import train_system
    from mome.training.systems import SystemOptions

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    if balanced_sampling:
        if train_options.get("sampling") not in (None, "task"):
            raise ConfigError("--balanced-sampling means --sampling task; give only one of them")
        train_options["sampling"] = "task"
    overrides = {
        "seed": train_options.get("seed"), "precision": train_options.get("precision"),
        "epochs": train_options.get("epochs"), "iterations_per_epoch": train_options.get("iterations"),
        "batch_size": train_options.get("batch_size"), "initial_lr": train_options.get("lr"),
        "sampling": train_options.get("sampling"), "augmentation": train_options.get("augmentation"),
        "intensity_shift": train_options.get("intensity_shift"),
        "oversample_foreground": train_options.get("oversample_foreground"),
        "batch_dice": train_options.get("batch_dice"), "dice_weight": train_options.get("dice_weight"),
        "tissue_weight": train_options.get("tissue_weight"),
        "grad_clip_scope": train_options.get("grad_clip"), "num_workers": train_options.get("num_workers"),
        "cache_dir": None if train_options.get("cache_dir") is None else str(train_options["cache_dir"]),
        "curriculum": train_options.get("curriculum"),
        "gradient_checkpointing": train_options.get("gradient_checkpointing"),
        "patch_size": _patch(patch_size),
        **_domain(train_options.get("label_maps"), train_options.get("lesion_masks"),
                  train_options.get("domain_fraction"), train_options.get("domain_no_lesion"),
                  train_options.get("domain_random_contrast")),
    }
    model_overrides = {"modalities": modalities, "gate_type": gate_type, "gate_activation": gate_activation}
    console = Console(stderr=True)
    train_system(name, collection, out, preset=preset, overrides=overrides, model_overrides=model_overrides,
                 options=SystemOptions(experts=None if experts is None else str(experts),
                                       expert_weights=expert_weights, reinit_expert_heads=reinit_expert_heads),
                 overwrite=overwrite, accelerator=accelerator, progress=progress,
                 log=lambda msg: console.print(msg, highlight=False))


def _patch(text: Optional[str]) -> Optional[list[int]]:
    from mome.errors import ConfigError

    if text is None:
        return None
    try:
        values = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError as exc:
        raise ConfigError(f"--patch-size must be integers like 64 or 64,64,48; got {text!r}") from exc
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise ConfigError(f"--patch-size needs 1 or 3 integers, got {text!r}")
    return values


def _domain(label_maps: Optional[Path], lesion_masks: Optional[Path], fraction: Optional[float],
            no_lesion: Optional[float] = None, random_contrast: Optional[float] = None) -> dict:
    """Generator options, with the folders checked now (before any training) so that a bad one is one line."""
    from mome.errors import ConfigError

    if label_maps is None:
        if lesion_masks is not None or fraction or no_lesion is not None or random_contrast is not None:
            raise ConfigError("--lesion-masks, --domain-fraction, --domain-no-lesion and --domain-random-contrast "
                              "need --label-maps DIR")
        return {}
    from mome.data.domain.label_maps import find_label_maps
    from mome.data.domain.lesion_bank import check_lesion_folder

    find_label_maps(label_maps)
    if lesion_masks is not None:
        check_lesion_folder(lesion_masks)
    return {"label_maps": str(Path(label_maps).resolve()),
            "lesion_masks": None if lesion_masks is None else str(Path(lesion_masks).resolve()),
            "domain_fraction": 0.5 if fraction is None else float(fraction),
            **({} if no_lesion is None else {"domain_no_lesion": float(no_lesion)}),
            **({} if random_contrast is None else {"domain_random_contrast": float(random_contrast)})}
