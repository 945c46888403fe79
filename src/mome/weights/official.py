"""The authors' official MoME weights: download from Hugging Face and convert to a mome model folder.

The weights (Apache-2.0) are at https://huggingface.co/ZhangxinruBIT/MoME in nnU-Net v2.2 checkpoint
files (see :mod:`mome.weights.nnunet_checkpoint`):

- ``MoME_CHECKPOINT/``: ``checkpoint_best.pth`` is the gate, ``checkpoint_best1.pth`` ..
  ``checkpoint_best5.pth`` the five fine-tuned experts. In the released code (``nnUNetTrainer``
  ``save_checkpoint`` and ``nnUNetPredictor``) the experts 1..5 are T1, T1ce, T2, FLAIR, DWI, the gate
  input is ``[image, expert1 stage-0 features, ..., expert5 stage-0 features]`` and gate channels
  ``[2i, 2i + 2)`` weight expert i+1's (background, lesion) logits, raw (no softmax).
- ``Pretrained_Experts/``: the five stage-1 experts (one nnU-Net each). They are imported as five
  single U-Net model folders (``OUT/T1``, ``OUT/T1ce``...), not as a MoME: there is no trained gate
  for them, and a MoME with a random gate would segment nothing. Stage-2 training builds the MoME.

``import_official`` reads the architecture from the plans inside each checkpoint, checks that the
experts agree and that the gate fits them (1 + 5 x F0 input channels, 5 x C outputs), and writes our
model folder (``config.json`` + ``model.safetensors``) with the source, licence and plans facts.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Literal

import torch

from mome.errors import CheckpointError, ConfigError, MomeError
from mome.model import build_model
from mome.model.config import MoMEConfig
from mome.utils.atomic import atomic_path, check_writable
from mome.utils.provenance import sha256_file
from mome.weights.nnunet_checkpoint import (
    PlansArchitecture,
    load_nnunet_checkpoint,
    plans_architecture,
    strip_wrapper_prefixes,
)
from mome.weights.nnunet_folder import nnunet_record
from mome.weights.store import load_unique_state_dict, save_model

OFFICIAL_REPO_ID = "ZhangxinruBIT/MoME"
OFFICIAL_URL = f"https://huggingface.co/{OFFICIAL_REPO_ID}"
LICENCE = "Apache-2.0"
MOME_FOLDER = "MoME_CHECKPOINT"
EXPERTS_FOLDER = "Pretrained_Experts"
#: expert i+1 of the released code (checkpoint_best{i+1}.pth) is RELEASED_MODALITIES[i]
RELEASED_MODALITIES = ("T1", "T1ce", "T2", "FLAIR", "DWI")
DEFAULT_CHECKPOINT = "checkpoint_best.pth"

Which = Literal["mome", "experts"]

# filename tokens that name a modality when Pretrained_Experts files are not numbered
# (e.g. the released trainer's fold_T1mod/, fold_T1cemod/ ... folders)
_END = r"(?=[^a-z0-9]|mod|$)"
_MODALITY_PATTERNS = {
    "T1": re.compile(r"(?<![a-z0-9])t1(?=[^a-z0-9]|mod|w[^a-z0-9]|w$|$)"),
    "T1ce": re.compile(r"(?<![a-z0-9])t1[-_]?(ce|gd|c)" + _END),
    "T2": re.compile(r"(?<![a-z0-9])t2(?=[^a-z0-9]|mod|w[^a-z0-9]|w$|$)"),
    "FLAIR": re.compile(r"(?<![a-z0-9])(t2[-_]?)?flair" + _END),
    "DWI": re.compile(r"(?<![a-z0-9])dwi" + _END),
}


def default_download_dir() -> Path:
    """Where ``mome weights download`` puts the files unless told otherwise (``~/.cache/mome/official``)."""
    return Path.home() / ".cache" / "mome" / "official"


def numbered_checkpoints(checkpoint_name: str = DEFAULT_CHECKPOINT, n: int = 5) -> list[str]:
    """The released code's expert file names: ``checkpoint_best.pth`` -> ``checkpoint_best1.pth`` ..."""
    stem, suffix = os.path.splitext(checkpoint_name)
    return [f"{stem}{i}{suffix}" for i in range(1, n + 1)]


def import_official(src_dir: str | os.PathLike, out_dir: str | os.PathLike, *, which: Which = "mome",
                    overwrite: bool = False, checkpoint_name: str = DEFAULT_CHECKPOINT,
                    plans: str | os.PathLike | None = None, dataset_json: str | os.PathLike | None = None) -> Path:
    """Convert the official nnU-Net checkpoints into a mome model folder.

    Args:
        src_dir: ``MoME_CHECKPOINT/`` (or ``Pretrained_Experts/``), or the folder holding it.
        out_dir: the model folder to write (for ``which="experts"``: a folder of five model folders,
            one per modality, plus ``experts.json``).
        which: ``mome`` (gate + 5 fine-tuned experts -> one MoME) or ``experts`` (5 stage-1 experts).
        overwrite: replace an existing ``out_dir``.
        checkpoint_name: the gate file name; expert files add 1..5 before the suffix.
        plans, dataset_json: the authors' ``plans.json`` / ``dataset.json`` when the user has them; they
            must agree with the plans inside the checkpoints. Default: the checkpoints' own copies.

    Returns:
        ``out_dir``.

    Raises:
        OutputExistsError: ``out_dir`` exists and not ``overwrite``.
        CheckpointError: files missing, unsafe or corrupt, or architectures that do not fit together.
    """
    if which not in ("mome", "experts"):
        raise ConfigError(f"which must be 'mome' or 'experts', got {which!r}")
    check_writable(out_dir, overwrite)  # refuse before reading hundreds of MB
    folder = find_official_folder(src_dir, which, checkpoint_name)
    files = (None if plans is None else Path(plans), None if dataset_json is None else Path(dataset_json))
    if which == "mome":
        return _import_mome(folder, Path(out_dir), overwrite, checkpoint_name, files)
    return _import_experts(folder, Path(out_dir), overwrite, checkpoint_name, files)


def find_official_folder(src_dir: str | os.PathLike, which: Which = "mome",
                         checkpoint_name: str = DEFAULT_CHECKPOINT) -> Path:
    """The folder that holds the checkpoints: ``src_dir`` itself or its ``MoME_CHECKPOINT``/``Pretrained_Experts``."""
    src = Path(src_dir).expanduser()
    if not src.is_dir():
        raise CheckpointError(f"{src} is not a folder; pass the downloaded {MOME_FOLDER}/ or {EXPERTS_FOLDER}/ "
                              "folder (or the folder that contains it)")
    name = MOME_FOLDER if which == "mome" else EXPERTS_FOLDER
    # the named folder first (the parent of Pretrained_Experts/ also holds MoME_CHECKPOINT/*.pth), wherever
    # it sits up to two levels down (the hub has MoME_foundation/MoME_CHECKPOINT/ since its restructuring)
    candidates = [src / name, *sorted(src.glob(f"*/{name}")), *sorted(src.glob(f"*/*/{name}")), src]
    for folder in candidates:
        if which == "mome" and (folder / checkpoint_name).is_file():
            return folder
        if which == "experts" and folder.is_dir() and _looks_like_experts(folder, checkpoint_name):
            return folder
    wanted = (f"{checkpoint_name} (gate) and {', '.join(numbered_checkpoints(checkpoint_name))} (experts)"
              if which == "mome" else f"{', '.join(numbered_checkpoints(checkpoint_name))} or one checkpoint "
                                      f"per modality ({', '.join(RELEASED_MODALITIES)})")
    raise CheckpointError(f"no official {which} checkpoints in {src}, {src / name} or a {name}/ folder up to two "
                          f"levels below {src}: expected {wanted}")


def _looks_like_experts(folder: Path, checkpoint_name: str) -> bool:
    return (folder / numbered_checkpoints(checkpoint_name)[0]).is_file() or any(folder.glob("*.pth")) \
        or any(folder.glob("*/*.pth"))


def expert_files(folder: Path, checkpoint_name: str = DEFAULT_CHECKPOINT) -> list[Path]:
    """The five expert checkpoints of ``folder`` in the released order (T1, T1ce, T2, FLAIR, DWI).

    Numbered files (``checkpoint_best1.pth``..) win; otherwise each ``.pth`` file (up to one folder
    deep) must name exactly one modality in its path (e.g. ``fold_T1cemod/checkpoint_best.pth``).
    """
    numbered = [folder / n for n in numbered_checkpoints(checkpoint_name)]
    present = [p for p in numbered if p.is_file()]
    if present:
        if len(present) != len(numbered):
            missing = [p.name for p in numbered if not p.is_file()]
            raise CheckpointError(f"{folder} lacks expert checkpoint(s) {', '.join(missing)}")
        return numbered
    found: dict[str, list[Path]] = {m: [] for m in RELEASED_MODALITIES}
    for path in sorted([*folder.glob("*.pth"), *folder.glob("*/*.pth")]):
        rel = str(path.relative_to(folder)).lower()
        hits = [m for m, pat in _MODALITY_PATTERNS.items() if pat.search(rel)]
        if "FLAIR" in hits and "T2" in hits:  # "T2-FLAIR" is FLAIR
            hits.remove("T2")
        if len(hits) == 1:
            found[hits[0]].append(path)
    order = []
    for modality, paths in found.items():
        if len(paths) > 1:  # several checkpoints of one expert: keep the requested one (best/final)
            paths = [p for p in paths if p.name == checkpoint_name] or paths
        if len(paths) != 1:
            what = "none" if not paths else ", ".join(str(p.relative_to(folder)) for p in paths)
            raise CheckpointError(
                f"cannot tell which file in {folder} is the {modality} expert (found: {what}); rename the five "
                f"expert checkpoints {', '.join(numbered_checkpoints(checkpoint_name))} in the order "
                f"{', '.join(RELEASED_MODALITIES)}")
        order.append(paths[0])
    return order


def _read(path: Path, plans: Path | None = None, dataset_json: Path | None = None
          ) -> tuple[PlansArchitecture, dict[str, torch.Tensor], dict]:
    """Architecture, weights and checkpoint dict; with ``plans``/``dataset_json`` files, those replace the
    checkpoint's own copies (after checking that they agree with them: the field that differs is named)."""
    from mome.weights.nnunet_folder import plans_and_dataset

    ckpt = load_nnunet_checkpoint(path)
    if plans is not None or dataset_json is not None:
        plans_dict, ds_dict, arch = plans_and_dataset(ckpt, str(path), plans, dataset_json)
        ckpt["init_args"] = {**(ckpt.get("init_args") or {}), "plans": plans_dict, "dataset_json": ds_dict}
    else:
        arch = plans_architecture(ckpt, source=str(path))
    return arch, strip_wrapper_prefixes(ckpt["network_weights"], str(path)), ckpt


def _read_experts(files: list[Path], plans: Path | None = None, dataset_json: Path | None = None
                  ) -> tuple[list[PlansArchitecture], list[dict[str, torch.Tensor]], list[dict]]:
    archs, weights, ckpts = [], [], []
    for path in files:
        arch, state, ckpt = _read(path, plans, dataset_json)
        if arch.unet.input_channels != 1:
            raise CheckpointError(f"{path}: an expert takes 1 image channel, this network takes "
                                  f"{arch.unet.input_channels} (is it the gate?)")
        if archs and arch.unet != archs[0].unet:
            raise CheckpointError(f"{path}: architecture differs from {files[0].name}'s "
                                  f"({arch.unet} vs {archs[0].unet}); all experts must share one topology")
        archs.append(arch)
        weights.append(state)
        ckpts.append(ckpt)
    return archs, weights, ckpts


def _import_mome(folder: Path, out_dir: Path, overwrite: bool, checkpoint_name: str, extra: tuple) -> Path:
    gate_path = folder / checkpoint_name
    files = expert_files(folder, checkpoint_name)
    archs, expert_states, _ = _read_experts(files, *extra)
    gate_arch, gate_state, gate_ckpt = _read(gate_path, *extra)
    expert = archs[0].unet
    config = MoMEConfig(modalities=list(RELEASED_MODALITIES), expert=expert, gate_type="hierarchical",
                        gate_activation="identity")
    wanted = config.gate_config()
    got = gate_arch.unet
    if got.input_channels != wanted.input_channels or got.num_classes != wanted.num_classes:
        raise CheckpointError(
            f"{gate_path}: the gate takes {got.input_channels} channels and gives {got.num_classes}; a MoME of "
            f"{len(RELEASED_MODALITIES)} experts with {expert.features_per_stage[0]} first-stage features and "
            f"{expert.num_classes} classes needs {wanted.input_channels} -> {wanted.num_classes}")
    if got != wanted:
        raise CheckpointError(f"{gate_path}: the gate's topology ({got}) differs from the experts' ({expert})")
    model = build_model(config)
    for module, state, path in zip(model.experts, expert_states, files):
        load_nnunet_state(module, state, str(path))
    load_nnunet_state(model.gate.net, gate_state, str(gate_path))
    metadata = _metadata(gate_arch, gate_ckpt, folder, [gate_path, *files], MOME_FOLDER)
    metadata["description"] = ("official MoME (Zhang et al., MICCAI 2024): gate + 5 fine-tuned experts, "
                               "imported from the authors' nnU-Net checkpoints")
    metadata["expert_files"] = {m: p.name for m, p in zip(RELEASED_MODALITIES, files)}
    metadata["gate_file"] = gate_path.name
    return save_model(model, out_dir, overwrite=overwrite, metadata=metadata)


def _import_experts(folder: Path, out_dir: Path, overwrite: bool, checkpoint_name: str, extra: tuple) -> Path:
    files = expert_files(folder, checkpoint_name)
    archs, states, ckpts = _read_experts(files, *extra)
    index = {"kind": "official_experts", "modalities": list(RELEASED_MODALITIES), "folders": {},
             "source": f"{OFFICIAL_URL}/tree/main/{EXPERTS_FOLDER}", "licence": LICENCE}
    with atomic_path(out_dir, overwrite=overwrite) as tmp:
        tmp.mkdir(parents=True)
        for modality, arch, state, ckpt, path in zip(RELEASED_MODALITIES, archs, states, ckpts, files):
            net = build_model(arch.unet)
            load_nnunet_state(net, state, str(path))
            metadata = _metadata(arch, ckpt, folder, [path], EXPERTS_FOLDER)
            metadata["description"] = f"official MoME stage-1 {modality} expert (one nnU-Net), authors' weights"
            metadata["modality"] = modality
            save_model(net, tmp / modality, metadata=metadata)
            index["folders"][modality] = modality
        (tmp / "experts.json").write_text(json.dumps(index, indent=2))
    return out_dir


def load_nnunet_state(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a ``PlainConvUNet`` state dict strictly into ``module`` (an ExpertUNet or a gate's net).

    nnU-Net state dicts hold each shared tensor under every name (``decoder.encoder.*`` repeats
    ``encoder.*``; ``convs.i.all_modules.*`` repeats ``convs.i.conv``/``norm``). The copies must be
    equal; only one is kept.
    """
    aliases = _alias_map(module)
    state = dict(state)
    for alias, canonical in aliases.items():
        if alias not in state:
            continue
        value = state.pop(alias)
        if canonical not in state:
            state[canonical] = value
        elif state[canonical].shape != value.shape or not torch.equal(state[canonical], value):
            raise CheckpointError(f"{source}: {alias!r} should be the same tensor as {canonical!r} but differs")
    load_unique_state_dict(module, state, source)


def _alias_map(module: torch.nn.Module) -> dict[str, str]:
    """State-dict key -> the first key sharing its tensor (same rule as :mod:`mome.weights.store`)."""
    first: dict[tuple, str] = {}
    out: dict[str, str] = {}
    for key, v in module.state_dict(keep_vars=True).items():
        ident = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), v.dtype)
        if v.numel() and ident in first:
            out[key] = first[ident]
        else:
            first[ident] = key
    return out


def file_axes(values: list, facts: dict) -> list:
    """Reorder a plans vector (network axis order) to the image file's voxel axes (i, j, k).

    nnU-Net's default reader for NIfTI (SimpleITKIO) gives arrays in (k, j, i) order, then applies
    ``transpose_forward``; NibabelIO keeps (i, j, k).
    """
    transpose = [int(t) for t in (facts.get("transpose_forward") or [0, 1, 2])]
    reversed_axes = (facts.get("image_reader_writer") or "SimpleITKIO") == "SimpleITKIO"
    out = list(values)
    for net_axis, array_axis in enumerate(transpose):
        out[2 - array_axis if reversed_axes else array_axis] = values[net_axis]
    return out


def _metadata(arch: PlansArchitecture, ckpt: dict, folder: Path, files: list[Path], hub_folder: str) -> dict:
    reader = arch.facts.get("image_reader_writer") or "SimpleITKIO"
    order = "(k, j, i) voxel axes, as SimpleITK reads the file" if reader == "SimpleITKIO" else \
        "(i, j, k) voxel axes, as nibabel reads the file"
    return {
        "source": f"{OFFICIAL_URL}/tree/main/{hub_folder}",
        "licence": LICENCE,
        "authors": "Xinru Zhang et al., 'A Foundation Model for Brain Lesion Segmentation with Mixture of "
                   "Modality Experts', MICCAI 2024",
        "modalities": list(RELEASED_MODALITIES),
        "gate_activation": "identity",
        "patch_size": file_axes(arch.patch_size, arch.facts),
        "spacing_mm": file_axes(arch.spacing, arch.facts),
        # the authors' nnU-Net fork does not crop to the non-zero box (Codes: cropping.py uses np.ones_like),
        # and their scans went through their MNI recipe first: the "authors" preprocessing profile
        "nnunet": {**nnunet_record(ckpt, arch, ckpt["init_args"]["plans"], ckpt["init_args"].get("dataset_json") or {},
                                   crop_to_nonzero=False, profile="authors"),
                   "network_input_axes": order},
        "imported_from": {"folder": str(folder.resolve()),
                          "sha256": {p.name if p.parent == folder else str(p.relative_to(folder)): sha256_file(p)
                                     for p in files}},
    }


def download_official(dest_dir: str | os.PathLike | None = None, *, which: Which = "mome",
                      endpoint: str | None = None, timeout_s: float = 10.0) -> Path:
    """Download ``MoME_CHECKPOINT/`` (or ``Pretrained_Experts/``) from Hugging Face.

    Args:
        dest_dir: where to put the folder (default :func:`default_download_dir`); files already there
            and complete are not downloaded again.
        which: ``mome`` or ``experts``.
        endpoint: another Hub endpoint (a mirror); default huggingface.co.
        timeout_s: seconds to wait for the Hub to answer each metadata request.

    Returns:
        The downloaded checkpoint folder (``dest_dir/MoME_CHECKPOINT`` or ``dest_dir/Pretrained_Experts``).

    Raises:
        MomeError: the Hub cannot be reached (offline machine, proxy, DNS) or refuses the request.
        CheckpointError: the download lacks the expected checkpoint files.
    """
    from huggingface_hub import snapshot_download

    if which not in ("mome", "experts"):
        raise ConfigError(f"which must be 'mome' or 'experts', got {which!r}")
    hub_folder = MOME_FOLDER if which == "mome" else EXPERTS_FOLDER
    dest = Path(dest_dir).expanduser() if dest_dir is not None else default_download_dir()
    try:
        # the folder at the top (the layout the importer was written for) or one level down
        # (MoME_foundation/MoME_CHECKPOINT/ after the hub repository was restructured)
        snapshot_download(repo_id=OFFICIAL_REPO_ID, repo_type="model",
                          allow_patterns=[f"{hub_folder}/*", f"*/{hub_folder}/*"],
                          local_dir=str(dest), endpoint=endpoint, etag_timeout=timeout_s)
    except _hub_errors() as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MomeError(
            f"could not download {hub_folder}/ from {endpoint or 'https://huggingface.co'}/{OFFICIAL_REPO_ID} "
            f"({type(exc).__name__}: {first}). If this machine is offline, download it elsewhere "
            f"(hf download {OFFICIAL_REPO_ID} --include '{hub_folder}/*' --local-dir DIR), copy DIR here and run "
            f"'mome weights import-official DIR/{hub_folder} --out MODEL_DIR'") from exc
    folder = find_official_folder(dest, which)  # names what was looked for when nothing matched
    if which == "mome":
        expert_files(folder)
    return folder


def _hub_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, ValueError]
    try:
        from huggingface_hub.errors import HfHubHTTPError

        errors.append(HfHubHTTPError)
    except ImportError:  # pragma: no cover - older huggingface_hub
        pass
    return tuple(errors)
