"""Whole-volume prediction: z-score, resample, pad, Gaussian sliding window, mirroring TTA, softmax.

The :class:`Predictor` wraps a trained network (a :class:`~mome.model.MoME`, or any single network
whose forward returns logits or a list of logits, highest resolution first) and turns one 3D image
into class probabilities on the image's own voxel grid, plus the gate's weight maps for a MoME.

Performance options (bf16, channels-last, one whole-volume window, gate-guided expert skipping) are
implemented in :mod:`mome.inference.acceleration` and plug into :meth:`Predictor._network`, the one
place the network is called; their measured cost and gain are in ``docs/performance.md``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import torch

from mome.data.intensity import zscore_in_brain
from mome.errors import ConfigError, InputError
from mome.inference.acceleration import check_skip_options, staged_mome_forward, to_channels_last
from mome.inference.backends import cpu_capability, resolve_backend
from mome.inference.grouped import GroupedExperts, grouped_mome_forward
from mome.inference.geometry import (
    Reorientation, needs_resampling, pad_to_multiple, resample, resampled_shape, voxel_spacing,
)
from mome.utils.nifti import MAX_VOXELS

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "auto")
# nnU-Net mirrors over every non-empty subset of the spatial axes (with the identity: 8 passes in 3D)
_MIRROR_AXES = [axes for r in (1, 2, 3) for axes in itertools.combinations((2, 3, 4), r)]


@dataclass
class Prediction:
    """Network output for one image, on that image's voxel grid.

    Attributes:
        probabilities: (C, X, Y, Z) float32 softmax probabilities (class 0 = background).
        gates: (N, C, X, Y, Z) float32 gate weights of a MoME (expert, class), else ``None``.
        expert_names: the experts' modality names of a MoME, else ``None``.
        gate_activation: ``identity`` (raw weights) or ``softmax`` for a MoME, else ``None``.
        info: how the prediction was made (device, patch, spacing, resampled, reoriented, tta...).
        uncertainty: (X, Y, Z) float32 voxel uncertainty with ``uncertainty=True``
            (:mod:`mome.inference.uncertainty`), else ``None``.
    """

    probabilities: np.ndarray
    gates: np.ndarray | None = None
    expert_names: list[str] | None = None
    gate_activation: str | None = None
    info: dict = field(default_factory=dict)
    uncertainty: np.ndarray | None = None

    @property
    def mask(self) -> np.ndarray:
        """Arg-max label map (X, Y, Z), uint8."""
        return np.argmax(self.probabilities, axis=0).astype(np.uint8)

    @property
    def lesion_probability(self) -> np.ndarray:
        """Probability of any lesion class, 1 - P(background), (X, Y, Z) float32."""
        return (1.0 - self.probabilities[0]).astype(np.float32)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an explicit ``cuda`` without CUDA is an error.

    Raises:
        ConfigError: unknown device name, or CUDA requested on a machine without it.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} was requested but CUDA is not available on this machine "
                              "(no GPU or a CPU-only torch); use --device cpu or --device auto")
        return torch.device(name)
    raise ConfigError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``fp32`` on a CPU; on a GPU ``bf16`` where it has native bf16, else ``fp32``; others unchanged.

    On a CPU bf16 misses the accuracy bar of issue 18 (mask Dice >= 0.995 against fp32 on every image): on
    the embedded model and the ``cpu`` synthetic test images it fell to 0.986 (OpenVINO) and 0.988 (PyTorch)
    with probabilities up to 0.89 apart, while OpenVINO fp32 agrees with eager fp32 to 1e-4
    (``benchmarks/backend_agreement.py``, docs/performance.md). Without native support bf16 is also slower.
    """
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "fp32"


def default_patch_size(model: torch.nn.Module) -> tuple[int, int, int]:
    """128^3 for paper-size networks (32 first-stage features or more), else 64^3."""
    cfg = _unet_config(model)
    size = 128 if cfg is not None and cfg.features_per_stage[0] >= 32 else 64
    return (size, size, size)


class Predictor:
    """Sliding-window inference of one trained network.

    Args:
        model: a MoME or single network; it is put in eval mode with deep supervision off.
        device: ``auto`` (CUDA if available, else CPU), ``cpu`` or ``cuda``.
        patch_size: sliding-window size in voxels (x, y, z); default 128^3 for paper-size networks,
            else 64^3. Must be a multiple of the network divisor. Windows are shrunk to the (padded)
            image where it is smaller. ``"whole"``: one window over the whole volume padded to the
            network divisor (about 4x fewer voxels than 128^3 windows at overlap 0.5 on a 160x196x160
            MNI crop; memory grows with the volume).
        spacing_mm: the voxel spacing (mm) the model was trained at; an input whose spacing differs by
            more than ``spacing_tolerance`` on any axis is resampled to it for the network and the
            result resampled back. ``None``: never resample.
        overlap: fraction of overlap between neighbouring windows (0.5 = nnU-Net's step 0.5).
        tta: mirroring test-time augmentation: average the logits of the 8 flips of the 3 axes.
        precision: ``fp32``, ``bf16`` (autocast; results are accumulated in fp32) or ``auto`` (fp32 on a
            CPU, where bf16 measured below issue 18's agreement bar; bf16 on a CUDA GPU that supports it).
        sw_batch_size: windows per network call.
        gates: also return the gate weight maps of a MoME (costs N x C volumes of memory).
        spacing_tolerance: relative spacing difference that triggers resampling.
        progress: show MONAI's per-window progress bar.
        channels_last: run the network in ``channels_last_3d`` memory format (measured slower for
            paper-size U-Nets on CPU; see ``docs/performance.md``).
        skip_experts: gate-guided expert skipping (MoME only): per window, the gate runs first and
            experts whose share of the gate weight is below this fraction are not run (0 = off).
        max_experts: run at most this many experts per window, largest gate shares first (MoME only;
            ``None`` = no limit).
        backend: ``torch`` (eager PyTorch), ``openvino`` (the network compiled by OpenVINO, CPU only, cached
            per model; :mod:`mome.inference.backends`) or ``auto`` (OpenVINO on a CPU where installed and the
            options allow it). ``precision`` applies to both (bf16: OpenVINO's inference precision hint).
        grouped_experts: run a MoME's experts as one network of grouped convolutions (same result up
            to float summation order; keeps a second copy of the expert weights). Measured slower than
            separate experts on CPU and on an H100 (docs/performance.md), so off by default. Not
            combined with expert skipping, which takes precedence.
        network_axes: which array axis (of the RAS-ordered volume) feeds each network axis; ``None`` =
            (0, 1, 2). :meth:`from_record` sets it for imported nnU-Net/official models, which were
            trained on SimpleITK's (k, j, i) arrays (:func:`network_axes_from_record`).
    """

    def __init__(self, model: torch.nn.Module, *, device: str | torch.device = "auto",
                 patch_size: tuple[int, int, int] | list[int] | int | None = None,
                 spacing_mm: tuple[float, float, float] | list[float] | None = None, overlap: float = 0.5,
                 tta: bool = False, precision: str = "fp32", sw_batch_size: int = 1, gates: bool = True,
                 spacing_tolerance: float = 0.1, progress: bool = False, channels_last: bool = False,
                 skip_experts: float = 0.0, max_experts: int | None = None, grouped_experts: bool = False,
                 network_axes: tuple[int, int, int] | list[int] | None = None, uncertainty: bool = False,
                 backend: str = "torch"):
        if precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        if not 0.0 <= overlap < 1.0:
            raise ConfigError(f"overlap must be in [0, 1), got {overlap}")
        if sw_batch_size < 1:
            raise ConfigError(f"sw_batch_size must be >= 1, got {sw_batch_size}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        if hasattr(self.model, "set_deep_supervision"):
            self.model.set_deep_supervision(False)
        self.network_axes = _check_axes(network_axes)
        cfg = _unet_config(model)
        divisor = cfg.divisor() if cfg is not None else (1, 1, 1)
        # the divisor is per network axis; padding and windows work on the array's axes
        self.divisor = tuple(divisor[self.network_axes.index(a)] for a in range(3))
        self.whole_volume = isinstance(patch_size, str) and patch_size.lower() == "whole"
        self.patch_size = None if self.whole_volume else _check_patch(patch_size or default_patch_size(model),
                                                                     self.divisor)
        self.spacing_mm = None if spacing_mm is None else _triple_float(spacing_mm, "spacing_mm")
        self.overlap = float(overlap)
        self.tta = bool(tta)
        self.precision = resolve_precision(precision, self.device)
        self.sw_batch_size = int(sw_batch_size)
        self.spacing_tolerance = float(spacing_tolerance)
        self.progress = progress
        config = getattr(model, "config", None)
        self.is_mome = hasattr(config, "n_experts") and hasattr(config, "gate_activation")
        self.return_gates = bool(gates) and self.is_mome
        self.record: dict = {}  # the model folder's config.json when built by from_record/from_name
        check_skip_options(skip_experts, max_experts)
        self.skip_experts = float(skip_experts)
        self.max_experts = None if max_experts is None else int(max_experts)
        skipping = self.skip_experts > 0 or self.max_experts is not None
        self.experts_run: list[int] = []  # per expert: network calls in which it ran (staged forward only)
        self.network_calls = 0
        self.grouped = None
        if grouped_experts and self.is_mome and not skipping:
            self.grouped = GroupedExperts(list(self.model.experts)).to(self.device).eval()
        # a MoME runs gate-first (staged_mome_forward) whether or not experts are skipped: the same
        # result as MoME.forward, measured faster and with half the peak memory (docs/performance.md)
        self.staged = self.is_mome and self.grouped is None and hasattr(model, "experts") and hasattr(model, "gate")
        self.return_uncertainty = bool(uncertainty)
        if self.return_uncertainty and not self.staged:
            raise ConfigError("--uncertainty (expert disagreement) needs one of mome's MoME models, run without "
                              "--grouped-experts")
        self.channels_last = bool(channels_last)
        if self.channels_last:
            to_channels_last(self.model)
            if self.grouped is not None:
                to_channels_last(self.grouped)
        self.backend = resolve_backend(backend, self.device, supported=self.grouped is None and not skipping,
                                       note=_note)
        self.compiled = None
        if self.backend == "openvino":
            from mome.inference.backends import compile_view

            self.compiled = compile_view(self.model, divisor, gates=self.return_gates,
                                         spread=self.return_uncertainty, precision=self.precision, note=_note)

    @property
    def backend_name(self) -> str:
        """The backend actually used, with its version (recorded in every prediction's info)."""
        if self.compiled is not None:
            return f"openvino {self.compiled.version}"
        return f"torch {torch.__version__}"

    @classmethod
    def from_record(cls, model: torch.nn.Module, record: dict | None, **options) -> "Predictor":
        """A predictor using the training patch size and spacing stored in a model's ``config.json``.

        ``options`` override the stored values (e.g. ``patch_size=...``); missing metadata falls back
        to :func:`default_patch_size` and 1 mm isotropic.
        """
        record = record or {}
        if options.get("patch_size") is None:
            options["patch_size"] = record.get("patch_size") or default_patch_size(model)
        if options.get("spacing_mm") is None:
            options["spacing_mm"] = record.get("spacing_mm") or (1.0, 1.0, 1.0)
        if options.get("network_axes") is None:
            options["network_axes"] = network_axes_from_record(record)
        predictor = cls(model, **options)
        predictor.record = record
        return predictor

    @classmethod
    def from_name(cls, name_or_dir: str | None = None, **options) -> tuple["Predictor", dict]:
        """Resolve ``--model`` (registered name, folder, or ``None`` = default) and build a predictor."""
        from mome.weights.registry import resolve_model

        model, record = resolve_model(name_or_dir)
        return cls.from_record(model, record, **options), record

    # -- public API ------------------------------------------------------------------------------

    def predict_image(self, image, brain_mask: np.ndarray | None = None) -> Prediction:
        """Predict a nibabel image; the result is on the image's exact voxel grid.

        The volume is reoriented (axis permutation and flips only) to the closest RAS voxel order
        for the network, as the training images (MNI space) were, and reoriented back.

        Args:
            image: a 3D nibabel image (already validated: finite, not all zero).
            brain_mask: optional (X, Y, Z) boolean brain mask for the z-score (default: non-zero voxels).
        """
        data = np.asarray(image.dataobj, dtype=np.float32)
        reor = Reorientation.from_affine(image.affine)
        spacing = reor.spacing_to_ras(voxel_spacing(image.affine))
        mask = None if brain_mask is None else reor.to_ras(np.asarray(brain_mask, dtype=bool))
        pred = self.predict_array(reor.to_ras(data), spacing, brain_mask=mask)
        pred.probabilities = reor.from_ras(pred.probabilities)
        if pred.gates is not None:
            pred.gates = reor.from_ras(pred.gates)
        if pred.uncertainty is not None:
            pred.uncertainty = reor.from_ras(pred.uncertainty)
        pred.info["reoriented"] = not reor.is_identity
        return pred

    def predict_array(self, image: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
                      brain_mask: np.ndarray | None = None) -> Prediction:
        """Predict a 3D array in its own voxel order.

        Args:
            image: (X, Y, Z) intensities, any units (z-scored here over the brain = non-zero voxels).
            spacing: voxel size in mm along X, Y, Z.
            brain_mask: optional (X, Y, Z) boolean mask for the z-score statistics.

        Returns:
            :class:`Prediction` with probabilities (C, X, Y, Z) float32 on the input grid.
        """
        image = np.asarray(image)
        if image.ndim != 3:
            raise InputError(f"expected a 3D image (X, Y, Z), got shape {image.shape}")
        spacing = _triple_float(spacing, "spacing")
        shape = tuple(int(s) for s in image.shape)
        normalised = torch.from_numpy(zscore_in_brain(image, brain_mask))
        resampled = needs_resampling(spacing, self.spacing_mm, self.spacing_tolerance)
        if resampled:
            target = resampled_shape(shape, spacing, self.spacing_mm)
            if int(np.prod(target, dtype=np.int64)) > MAX_VOXELS:
                raise InputError(f"resampling the {shape} image at {spacing} mm to the model's {self.spacing_mm} mm "
                                 f"would make {target} = {int(np.prod(target, dtype=np.int64)):.3g} voxels; check the "
                                 "image's voxel size and the model's spacing_mm")
            normalised = resample(normalised, target)
        logits, gates, spread = self._sliding_window(normalised)
        if resampled:
            # nnU-Net resamples logits (not probabilities) back to the original grid, then applies softmax
            logits = resample(logits, shape)
            gates = None if gates is None else resample(gates, shape)
            spread = None if spread is None else resample(spread, shape)
        probabilities = torch.softmax(logits, dim=0).numpy().astype(np.float32, copy=False)
        info = {"device": str(self.device), "backend": self.backend_name, "cpu_capability": cpu_capability(),
                "patch_size": "whole" if self.whole_volume else list(self.patch_size),
                "overlap": self.overlap, "tta": self.tta, "precision": self.precision,
                "channels_last": self.channels_last, "grouped_experts": self.grouped is not None,
                "network_axes": list(self.network_axes),
                "input_spacing_mm": list(spacing),
                "model_spacing_mm": None if self.spacing_mm is None else list(self.spacing_mm),
                "resampled": resampled}
        if self.staged:
            info.update(skip_experts=self.skip_experts, max_experts=self.max_experts,
                        expert_calls=list(self.experts_run), network_calls=self.network_calls)
        uncertainty = None if spread is None else spread[0].numpy().astype(np.float32, copy=False)
        if gates is None:
            return Prediction(probabilities, info=info, uncertainty=uncertainty)
        cfg = self.model.config
        gate_maps = gates.reshape(cfg.n_experts, cfg.num_classes, *shape).numpy().astype(np.float32, copy=False)
        return Prediction(probabilities, gate_maps, list(cfg.modalities), cfg.gate_activation, info, uncertainty)

    # -- internals -------------------------------------------------------------------------------

    @torch.inference_mode()
    def _sliding_window(self, volume: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(X, Y, Z) normalised volume -> (logits (C, X, Y, Z), gates (N*C, X, Y, Z) or None, uncertainty
        (1, X, Y, Z) or None), on CPU."""
        from monai.inferers import sliding_window_inference

        padded, crop = pad_to_multiple(volume[None, None].to(self.device), self.divisor)
        if self.whole_volume:
            roi = tuple(padded.shape[2:])
        else:
            roi = tuple(min(p, s) for p, s in zip(self.patch_size, padded.shape[2:]))
        if self.staged:
            self.experts_run = [0] * self.model.config.n_experts
            self.network_calls = 0
        out = sliding_window_inference(
            padded, roi_size=roi, sw_batch_size=self.sw_batch_size, predictor=self._window,
            overlap=self.overlap, mode="gaussian", sigma_scale=0.125, progress=self.progress,
        )
        outs = out if isinstance(out, (tuple, list)) else (out,)
        gates = _crop(outs[1], crop) if self.return_gates else None
        spread = _crop(outs[-1], crop) if self.return_uncertainty else None
        return _crop(outs[0], crop), gates, spread

    def _window(self, x: torch.Tensor):
        """One batch of windows -> summed-over-mirrors-and-averaged logits (and gates) in fp32."""
        outs = self._network(x)
        variances, probabilities = [], []
        if self.return_uncertainty:  # the expert spread is the last output: kept apart, not averaged
            variances.append(outs[-1] ** 2)
            probabilities.append(1.0 - torch.softmax(outs[0], dim=1)[:, :1])
            outs = outs[:-1]
        if self.tta:
            for axes in _MIRROR_AXES:
                flipped = [torch.flip(f, axes) for f in self._network(torch.flip(x, axes))]
                if self.return_uncertainty:
                    variances.append(flipped[-1] ** 2)
                    probabilities.append(1.0 - torch.softmax(flipped[0], dim=1)[:, :1])
                    flipped = flipped[:-1]
                outs = [o + f for o, f in zip(outs, flipped)]
            outs = [o / (len(_MIRROR_AXES) + 1) for o in outs]
        if self.return_uncertainty:
            from mome.inference.uncertainty import combine_with_mirrors

            outs.append(combine_with_mirrors(variances, probabilities))
        return tuple(outs) if len(outs) > 1 else outs[0]

    def _network(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Run the network on (B, 1, X, Y, Z): [full-resolution logits, gates as (B, N*C, ...) when asked]."""
        if self.network_axes != (0, 1, 2):
            perm = (0, 1, *(2 + a for a in self.network_axes))
            inverse = (0, 1, *(2 + self.network_axes.index(a) for a in range(3)))
            outs = self._network_in_its_axes(x.permute(*perm).contiguous())
            return [o.permute(*inverse).contiguous() for o in outs]
        return self._network_in_its_axes(x)

    def _network_in_its_axes(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.compiled is not None:
            out = self.compiled(x)
            self.network_calls += 1
            if self.staged:  # OpenVINO runs every expert
                self.experts_run = [n + 1 for n in self.experts_run]
            return list(out) if isinstance(out, tuple) else [out]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            if self.staged:
                return self._staged(x)
            if self.grouped is not None:
                logits, g = grouped_mome_forward(self.model, self.grouped, x)
                outs = [logits.float()]
                return outs + [g.reshape(g.shape[0], -1, *g.shape[3:]).float()] if self.return_gates else outs
            out = self.model(x, return_gates=True) if self.return_gates else self.model(x)
        if self.return_gates:
            g = out.gates[0]
            return [out.logits[0].float(), g.reshape(g.shape[0], -1, *g.shape[3:]).float()]
        logits = getattr(out, "logits", out)
        if isinstance(logits, (list, tuple)):
            logits = logits[0]
        return [logits.float()]


    def _staged(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Gate-first MoME forward with expert skipping; counts which experts ran."""
        out = staged_mome_forward(self.model, x, skip_below=self.skip_experts, max_experts=self.max_experts,
                                  spread=self.return_uncertainty)
        self.network_calls += 1
        for i in out.kept:
            self.experts_run[i] += 1
        outs = [out.logits.float()]
        if self.return_gates:
            g = out.gates
            outs.append(g.reshape(g.shape[0], -1, *g.shape[3:]).float())
        if self.return_uncertainty:
            outs.append(out.spread.float())
        return outs


def network_axes_from_record(record: dict | None) -> tuple[int, int, int]:
    """Which array axis feeds each network axis, from an imported nnU-Net model's record.

    nnU-Net's default NIfTI reader (SimpleITK) hands the network arrays in (k, j, i) voxel order, then
    applies the plans' ``transpose_forward``; its NibabelIO keeps (i, j, k). Our own models see (i, j, k).
    """
    facts = (record or {}).get("nnunet")
    if not facts:
        return (0, 1, 2)
    transpose = [int(t) for t in (facts.get("transpose_forward") or [0, 1, 2])]
    if (facts.get("image_reader_writer") or "SimpleITKIO") == "SimpleITKIO":
        return tuple(2 - t for t in transpose)
    return tuple(transpose)


def _check_axes(v) -> tuple[int, int, int]:
    axes = (0, 1, 2) if v is None else tuple(int(a) for a in v)
    if sorted(axes) != [0, 1, 2]:
        raise ConfigError(f"network_axes must be a permutation of (0, 1, 2), got {v}")
    return axes


def _crop(t: torch.Tensor, crop: tuple[slice, ...]) -> torch.Tensor:
    return t[0][(slice(None), *crop)].float().cpu()


def _unet_config(model: torch.nn.Module):
    cfg = getattr(model, "config", None)
    if cfg is None:
        return None
    return getattr(cfg, "expert", cfg) if hasattr(getattr(cfg, "expert", cfg), "divisor") else None


def _triple_float(v, name: str) -> tuple[float, float, float]:
    vals = [float(v)] * 3 if isinstance(v, (int, float)) else [float(a) for a in v]
    if len(vals) != 3 or not all(np.isfinite(a) and a > 0 for a in vals):
        raise ConfigError(f"{name} must be 3 positive numbers (mm), got {v}")
    return tuple(vals)


def _check_patch(v, divisor: tuple[int, int, int]) -> tuple[int, int, int]:
    vals = [int(v)] * 3 if isinstance(v, (int, np.integer)) else [int(a) for a in v]
    if len(vals) != 3 or min(vals) < 1:
        raise ConfigError(f"patch_size must be 3 positive integers (voxels), got {v}")
    bad = [p for p, d in zip(vals, divisor) if p % d]
    if bad:
        raise ConfigError(f"patch_size {tuple(vals)} must be a multiple of the network divisor {divisor}")
    return tuple(vals)


def _note(message: str) -> None:
    import sys

    print(f"note: {message}", file=sys.stderr)
