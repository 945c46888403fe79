"""Inference for imported nnU-Net models (official MoME, nnU-Net folders) through nnU-Net v2's own code.

A network fed other inputs than its training inputs can fail silently, and nnU-Net's inference has
many details that move the mask (measured in the official-weights issue): crop to the non-zero box,
the normalisation mask with its hole filling, resampling orders (separate z for anisotropic data),
the image padded to the patch, the window positions, the Gaussian, mirroring over the checkpoint's
axes, logits resampled back and put into the uncropped grid. Rather than re-implement these, this
module calls nnunetv2 (the optional extra ``mome[nnunet]``): its ``DefaultPreprocessor``, its
``nnUNetPredictor`` (sliding window, Gaussian, mirroring) and its export function, with mome's network
(a U-Net, or a MoME whose forward is the released one) in place of nnU-Net's. The one deviation a
model can ask for is the authors' fork's: no crop to the non-zero box (``crop_to_nonzero: false`` in
its record), done by handing nnU-Net's preprocessor the full box.

``--fast`` (``fast=True``) is the TotalSegmentator-style shortcut: one window over the whole
preprocessed volume (padded to the network divisor) and no mirroring.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import warnings

import numpy as np
import torch
from torch import nn

from mome.errors import ConfigError, NotImplementedFeatureError
from mome.inference.backends import cpu_capability, resolve_backend
from mome.inference.predictor import Prediction, _note, _unet_config, resolve_device, resolve_precision

#: nnU-Net readers whose arrays are the file's voxels in reversed (k, j, i) order
SUPPORTED_READERS = ("SimpleITKIO", "NibabelIO")
INSTALL_HINT = "pip install 'mome[nnunet]' (nnunetv2==2.6.0)"


def is_nnunet_record(record: dict | None) -> bool:
    """Whether a model record comes from an nnU-Net import with everything nnU-Net's inference needs."""
    facts = (record or {}).get("nnunet") or {}
    return isinstance(facts.get("plans"), dict) and isinstance(facts.get("dataset_json"), dict)


def import_nnunetv2():
    """Import nnunetv2 quietly (it prints notes about unset nnUNet_raw... paths), or say how to install it."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import nnunetv2  # noqa: F401
            from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor  # noqa: F401
    except ImportError as exc:
        raise NotImplementedFeatureError(
            f"imported nnU-Net models predict through nnU-Net's own code, which is not installed ({exc}); "
            f"run: {INSTALL_HINT}") from exc
    import nnunetv2

    return nnunetv2


class _Logits(nn.Module):
    """mome's network as nnU-Net's predictor calls it: (B, C_in, ...) -> full-resolution logits, fp32."""

    def __init__(self, net: nn.Module, bf16: bool = False):
        super().__init__()
        self.net = net
        self.bf16 = bf16
        self.is_mome = hasattr(net, "experts") and hasattr(net, "gate")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from mome.inference.acceleration import staged_mome_forward

        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            if self.is_mome:  # gate first: the same result as MoME.forward with half the peak memory
                return staged_mome_forward(self.net, x, skip_below=0.0, max_experts=None).logits.float()
            out = self.net(x)
        logits = getattr(out, "logits", out)
        return (logits[0] if isinstance(logits, (list, tuple)) else logits).float()


@contextlib.contextmanager
def _no_crop_to_nonzero():
    """nnU-Net's preprocessing with the authors' fork's cropping: the full box, every voxel "inside".

    The fork's ``crop_to_nonzero`` builds its mask from ``np.ones_like(data)``; nnU-Net's preprocessor
    calls the module-level function, so it is swapped for the length of one preprocessing call.
    """
    from nnunetv2.preprocessing.preprocessors import default_preprocessor as dp

    def full_box(data, seg=None, nonzero_label=-1):
        bbox = [[0, int(n)] for n in data.shape[1:]]
        if seg is None:
            seg = np.zeros((1, *data.shape[1:]), dtype=np.int8)
        return data, seg, bbox

    original = dp.crop_to_nonzero
    dp.crop_to_nonzero = full_box
    try:
        yield
    finally:
        dp.crop_to_nonzero = original


class NnunetPredictor:
    """nnU-Net v2's inference of an imported model, on a nibabel image; same interface as ``Predictor``.

    Args:
        model: the imported network (single U-Net or MoME).
        record: the model folder's ``config.json`` (its ``nnunet`` entry: plans, dataset.json...).
        device: ``auto``, ``cpu`` or ``cuda``.
        fast: one whole-volume window, no mirroring (default: nnU-Net's windows and mirroring).
        precision: ``fp32`` (nnU-Net's CPU behaviour; on CUDA nnU-Net autocasts itself) or ``bf16`` /
            ``auto`` (bf16 autocast, ``fast`` only: not what the model was validated with).
        tile_step_size: nnU-Net's window step as a fraction of the patch (0.5).
        progress: nnU-Net's per-window progress bar.
    """

    def __init__(self, model: nn.Module, record: dict, *, device: str | torch.device = "auto", fast: bool = False,
                 precision: str = "fp32", tile_step_size: float = 0.5, progress: bool = False,
                 backend: str = "torch"):
        nnunetv2 = import_nnunetv2()
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        if not is_nnunet_record(record):
            raise ConfigError("this model folder has no nnU-Net plans and dataset.json in its config.json; "
                              "re-import it with this version of mome (mome weights import-nnunet / import-official)")
        if not 0 < tile_step_size <= 1:
            raise ConfigError(f"tile_step_size must be in (0, 1], got {tile_step_size}")
        self.record = record
        self.facts = record["nnunet"]
        self.device = resolve_device(device)
        self.fast = bool(fast)
        self.precision = resolve_precision(precision, self.device) if self.fast else "fp32"
        self.model = model.to(self.device).eval()
        if hasattr(self.model, "set_deep_supervision"):
            self.model.set_deep_supervision(False)
        with warnings.catch_warnings():  # "Detected old nnU-Net plans format": converted, as intended
            warnings.simplefilter("ignore", UserWarning)
            self.plans_manager = PlansManager(copy.deepcopy(self.facts["plans"]))
            self.configuration = self.plans_manager.get_configuration(self.facts["configuration"])
        self.dataset_json = self.facts["dataset_json"]
        self._check_plans(nnunetv2)
        axes = self.facts.get("inference_allowed_mirroring_axes")
        self.mirror_axes = None if axes is None else tuple(int(a) for a in axes)
        self.backend = resolve_backend(backend, self.device, note=_note)
        if self.backend == "openvino":  # the same gate-first graph as _Logits, compiled (mome.inference.backends)
            from mome.inference.backends import compile_view

            self.network = compile_view(self.model, _network_divisor(self.model), precision=self.precision,
                                        note=_note)
        else:
            self.network = _Logits(self.model, bf16=self.precision == "bf16").to(self.device).eval()
        on_gpu = self.device.type == "cuda"
        with contextlib.redirect_stdout(io.StringIO()):  # a CPU-device note printed by the constructor
            self.predictor = nnUNetPredictor(tile_step_size=tile_step_size, use_gaussian=not self.fast,
                                             use_mirroring=not self.fast, perform_everything_on_device=on_gpu,
                                             device=self.device, verbose=False, allow_tqdm=progress)
        self.predictor.manual_initialization(self.network, self.plans_manager, self.configuration,
                                             [self.network.state_dict()], self.dataset_json,
                                             str(self.facts.get("trainer_name") or "nnUNetTrainer"), self.mirror_axes)
        self.version = getattr(nnunetv2, "__version__", None) or _dist_version("nnunetv2")

    def _check_plans(self, nnunetv2) -> None:
        """Everything nnU-Net's preprocessing will look up, checked before any image is read."""
        import os

        from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

        reader = self.plans_manager.plans.get("image_reader_writer", "SimpleITKIO")
        if reader not in SUPPORTED_READERS:
            raise NotImplementedFeatureError(
                f"plans field 'image_reader_writer' is {reader!r}; mome feeds nnU-Net arrays as "
                f"{' or '.join(SUPPORTED_READERS)} read them (reoriented readers are not implemented)")
        cm = self.configuration
        if len(cm.patch_size) != 3:
            raise NotImplementedFeatureError(f"configuration {self.facts['configuration']!r} is 2D (plans field "
                                             "'patch_size'); mome imports 3D nnU-Net models")
        props = self.plans_manager.foreground_intensity_properties_per_channel
        for c, scheme in enumerate(cm.normalization_schemes):
            found = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "preprocessing", "normalization"),
                                                scheme, "nnunetv2.preprocessing.normalization")
            if found is None:
                raise ConfigError(f"plans field 'normalization_schemes' names {scheme!r}, which nnU-Net "
                                  f"{_dist_version('nnunetv2')} does not implement")
            if str(c) not in props:
                raise ConfigError(f"plans field 'foreground_intensity_properties_per_channel' has no entry {str(c)!r} "
                                  f"(needed by {scheme})")
        if len(cm.normalization_schemes) != 1 or len(cm.use_mask_for_norm) != 1:
            raise NotImplementedFeatureError(
                f"plans field 'normalization_schemes' has {len(cm.normalization_schemes)} channels; mome predicts "
                "single-image (one channel) models")

    # -- public API ------------------------------------------------------------------------------

    def predict_image(self, image, brain_mask: np.ndarray | None = None) -> Prediction:
        """Class probabilities on ``image``'s own voxel grid, computed by nnU-Net's inference.

        ``brain_mask`` is ignored: nnU-Net's normalisation uses its own mask (the plans decide).
        """
        from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
        from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

        data = np.asarray(image.dataobj, dtype=np.float32)
        zooms = [float(z) for z in image.header.get_zooms()[:3]]
        # nnU-Net's readers (SimpleITKIO, NibabelIO) give (c, k, j, i) arrays and spacing in that order
        properties = {"spacing": zooms[::-1]}
        cropping = contextlib.nullcontext() if self.facts.get("crop_to_nonzero", True) else _no_crop_to_nonzero()
        with cropping, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            pre, _, properties = DefaultPreprocessor(verbose=False).run_case_npy(
                data.transpose(2, 1, 0)[None], None, properties, self.plans_manager, self.configuration,
                self.dataset_json)
        pre = torch.from_numpy(np.ascontiguousarray(pre))
        self.predictor.configuration_manager = self._window_configuration(pre.shape[1:])
        try:
            logits = self.predictor.predict_logits_from_preprocessed_data(pre).cpu()
        finally:
            self.predictor.configuration_manager = self.configuration
        _, probabilities = convert_predicted_logits_to_segmentation_with_correct_shape(
            logits, self.plans_manager, self.configuration, self.predictor.label_manager, properties,
            return_probabilities=True)
        probabilities = np.ascontiguousarray(np.asarray(probabilities, dtype=np.float32).transpose(0, 3, 2, 1))
        network = (f"openvino {self.network.version}" if self.backend == "openvino" else f"torch {torch.__version__}")
        info = {"backend": f"nnunetv2 {self.version}", "network_backend": network,
                "cpu_capability": cpu_capability(), "device": str(self.device),
                "patch_size": "whole" if self.fast else list(self.configuration.patch_size),
                "tile_step_size": self.predictor.tile_step_size, "gaussian": not self.fast,
                "mirroring_axes": None if self.fast else (None if self.mirror_axes is None else list(self.mirror_axes)),
                "precision": self.precision, "crop_to_nonzero": bool(self.facts.get("crop_to_nonzero", True)),
                "normalization": list(self.configuration.normalization_schemes),
                "use_mask_for_norm": list(self.configuration.use_mask_for_norm),
                "network_input_shape": [int(s) for s in pre.shape[1:]],
                "model_spacing_mm": list(self.configuration.spacing), "input_spacing_mm": zooms}
        return Prediction(probabilities, info=info)

    def _window_configuration(self, shape):
        """The plans' configuration, or with ``fast`` one whose patch is the whole volume padded to the divisor."""
        if not self.fast:
            return self.configuration
        from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

        strides = np.array(self.configuration.pool_op_kernel_sizes, dtype=int)
        divisor = np.prod(strides, axis=0)
        patch = [int(math.ceil(s / d) * d) for s, d in zip(shape, divisor)]
        config = copy.deepcopy(self.configuration.configuration)
        config["patch_size"] = patch
        return ConfigurationManager(config)


def _network_divisor(model: nn.Module) -> tuple[int, int, int]:
    cfg = _unet_config(model)
    return tuple(cfg.divisor()) if cfg is not None else (16, 16, 16)


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
