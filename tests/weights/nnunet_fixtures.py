"""Build folders in the official MoME checkpoint layout with nnU-Net's own network, independently of mome.

Networks are ``dynamic_network_architectures``' ``PlainConvUNet`` built the way nnU-Net 2.2's
``get_network_from_plans`` builds them (never mome's ExpertUNet); checkpoints are the dicts nnU-Net's
and the released MoME trainer's ``save_checkpoint`` write, saved with ``torch.save``.
"""

from __future__ import annotations

import pickle
import time
import types
from pathlib import Path

import numpy as np
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from torch import nn

# a small anisotropic topology: features min(4 * 2**i, 12) = 4, 8, 12; inputs divisible by (4, 4, 2)
SMALL = dict(base=4, cap=12, kernels=[[3, 3, 3], [3, 3, 1], [3, 3, 3]], strides=[[1, 1, 1], [2, 2, 1], [2, 2, 2]],
             n_enc=[2, 1, 2], n_dec=[1, 2], patch=[16, 12, 8], spacing=[1.0, 0.9, 0.8])
N_EXPERTS, N_CLASSES = 5, 2


def nnunet_plans(base, cap, kernels, strides, n_enc, n_dec, patch, spacing, configuration="3d_fullres") -> dict:
    """An nnU-Net v2.2 plans dict (as ``nnUNetPlans.json``) whose ``configuration`` is the given topology.

    When ``configuration`` is not ``3d_fullres`` it inherits from ``3d_fullres`` and overrides the topology,
    so ``inherits_from`` must be resolved to read it.
    """
    topology = {
        "patch_size": list(patch), "spacing": list(spacing),
        "UNet_base_num_features": base, "unet_max_num_features": cap,
        "n_conv_per_stage_encoder": list(n_enc), "n_conv_per_stage_decoder": list(n_dec),
        "num_pool_per_axis": [sum(1 for s in strides if s[a] == 2) for a in range(3)],
        "pool_op_kernel_sizes": strides, "conv_kernel_sizes": kernels,
    }
    fullres = {
        "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
        "median_image_size_in_voxels": [160.0, 196.0, 160.0], "normalization_schemes": ["ZScoreNormalization"],
        "use_mask_for_norm": [False], "UNet_class_name": "PlainConvUNet",
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "batch_dice": False,
    }
    configurations = {"2d": {**fullres, "data_identifier": "nnUNetPlans_2d", "batch_size": 49,
                             "patch_size": [192, 160], "spacing": [1.0, 1.0], "UNet_base_num_features": 32,
                             "unet_max_num_features": 512, "conv_kernel_sizes": [[3, 3]] * 6,
                             "pool_op_kernel_sizes": [[1, 1]] + [[2, 2]] * 5, "n_conv_per_stage_encoder": [2] * 6,
                             "n_conv_per_stage_decoder": [2] * 5, "num_pool_per_axis": [5, 5]}}
    if configuration == "3d_fullres":
        configurations["3d_fullres"] = {**fullres, **topology}
    else:  # 3d_fullres has another (paper-size) topology; the named configuration overrides it
        paper = {"patch_size": [128, 128, 128], "spacing": [1.0, 1.0, 1.0], "UNet_base_num_features": 32,
                 "unet_max_num_features": 320, "n_conv_per_stage_encoder": [2] * 6,
                 "n_conv_per_stage_decoder": [2] * 5, "num_pool_per_axis": [5, 5, 5],
                 "pool_op_kernel_sizes": [[1, 1, 1]] + [[2, 2, 2]] * 5, "conv_kernel_sizes": [[3, 3, 3]] * 6}
        configurations["3d_fullres"] = {**fullres, **paper}
        configurations[configuration] = {"inherits_from": "3d_fullres", "batch_size": 4, **topology}
    return {
        "dataset_name": "Dataset011_009SingleLableAbnomal", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0],
        "original_median_shape_after_transp": [160, 196, 160],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": configurations,
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": {"max": 9.5, "mean": 1.2, "median": 1.1,
                                                              "min": -3.0, "percentile_00_5": -1.9,
                                                              "percentile_99_5": 4.4, "std": 1.0}},
    }


def plain_conv_unet(input_channels: int, num_classes: int, base, cap, kernels, strides, n_enc, n_dec,
                    seed: int, **_) -> PlainConvUNet:
    """nnU-Net 2.2's ``get_network_from_plans`` network, with every parameter randomly perturbed."""
    n = len(kernels)
    torch.manual_seed(seed)
    net = PlainConvUNet(
        input_channels=input_channels, n_stages=n, features_per_stage=[min(base * 2 ** i, cap) for i in range(n)],
        conv_op=nn.Conv3d, kernel_sizes=kernels, strides=strides, n_conv_per_stage=n_enc, num_classes=num_classes,
        n_conv_per_stage_decoder=n_dec, conv_bias=True, norm_op=nn.InstanceNorm3d,
        norm_op_kwargs={"eps": 1e-5, "affine": True}, dropout_op=None, dropout_op_kwargs=None,
        nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=True,
    )
    with torch.no_grad():
        for p in net.parameters():  # non-trivial norms and biases, so a wrong mapping shows
            p.add_(0.2 * torch.randn_like(p))
    return net.eval()


def prefixed(state: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in state.items()}


def nnunet_checkpoint(net: nn.Module, plans: dict, configuration: str, prefix: str = "",
                      optimizer_over: list[nn.Module] | None = None) -> dict:
    """The dict nnU-Net's (and the MoME trainer's) ``save_checkpoint`` writes.

    ``optimizer_over``: give the gate file the optimizer state (SGD over these networks, one step
    taken) and grad-scaler state, as the MoME trainer does; expert files have neither.
    """
    rng = np.random.default_rng(0)
    dice = [np.float64(v) for v in rng.uniform(0.2, 0.8, 3)]
    ckpt = {"network_weights": prefixed(net.state_dict(), prefix)}
    if optimizer_over is not None:
        params = [p for m in optimizer_over for p in m.parameters()]
        opt = torch.optim.SGD(params, lr=1e-3, weight_decay=3e-5, momentum=0.99, nesterov=True)
        kept = [p.detach().clone() for p in params]
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()  # fills the momentum buffers; the weights are put back below
        with torch.no_grad():
            for p, k in zip(params, kept):
                p.copy_(k)
                p.grad = None
        ckpt["optimizer_state"] = opt.state_dict()
        ckpt["grad_scaler_state"] = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                                     "growth_interval": 2000, "_growth_tracker": 17}
    now = time.time()
    ckpt.update({
        "logging": {"mean_fg_dice": dice, "ema_fg_dice": [np.float64(v * 0.9) for v in dice],
                    "dice_per_class_or_region": [[d] for d in dice], "train_losses": [np.float32(-0.5)] * 3,
                    "val_losses": [np.float32(-0.4)] * 3, "lrs": [1e-3, 9e-4, 8e-4],
                    "epoch_start_timestamps": [now - 3, now - 2, now - 1],
                    "epoch_end_timestamps": [now - 2.5, now - 1.5, now - 0.5]},
        "_best_ema": np.float64(0.7),
        "current_epoch": 800,
        "init_args": {"plans": plans, "configuration": configuration, "fold": "MoME",
                      "dataset_json": {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "abnormal": 1},
                                       "numTraining": 3, "file_ending": ".nii.gz"},
                      "unpack_dataset": True, "device": torch.device("cuda")},
        "trainer_name": "nnUNetTrainer",
        "inference_allowed_mirroring_axes": (0, 1, 2),
    })
    return ckpt


class _Numpy1Pickler(pickle._Pickler):
    """Writes NumPy globals under their NumPy 1.x names (``numpy.core.multiarray.scalar``), as the authors'
    files (saved with NumPy 1.x) name them."""

    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", "") or ""
        if module.startswith("numpy._core"):
            self.write(pickle.GLOBAL + f"{module.replace('numpy._core', 'numpy.core', 1)}\n{obj.__name__}\n".encode())
            self.memoize(obj)
            return
        super().save_global(obj, name)


NUMPY1_PICKLE = types.SimpleNamespace(Pickler=_Numpy1Pickler, Unpickler=pickle.Unpickler, __name__="pickle")


def save_checkpoint(ckpt: dict, path: Path, numpy1_names: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if numpy1_names:
        torch.save(ckpt, path, pickle_module=NUMPY1_PICKLE)
    else:
        torch.save(ckpt, path)
    return path


def write_official_mome(folder: Path, topo: dict = SMALL, configuration: str = "3d_fullres",
                        prefixes: tuple[str, ...] = ("_orig_mod.", "module.", "module._orig_mod.", "", "module.",
                                                     "_orig_mod."),
                        gate_experts: int = N_EXPERTS, seed: int = 0) -> tuple[list[PlainConvUNet], PlainConvUNet]:
    """Write ``folder/checkpoint_best.pth`` (gate) and ``checkpoint_best1..5.pth`` (experts T1..DWI).

    ``prefixes[0]`` is the gate's key prefix, ``prefixes[1:]`` the experts'. ``gate_experts`` sets the
    gate's input/output width (5 for a consistent folder). Returns (experts, gate) networks.
    """
    plans = nnunet_plans(**topo, configuration=configuration)
    experts = [plain_conv_unet(1, N_CLASSES, seed=seed + 1 + i, **topo) for i in range(N_EXPERTS)]
    f0 = topo["base"]
    gate = plain_conv_unet(1 + gate_experts * f0, gate_experts * N_CLASSES, seed=seed, **topo)
    save_checkpoint(nnunet_checkpoint(gate, plans, configuration, prefixes[0], optimizer_over=[gate, *experts]),
                    folder / "checkpoint_best.pth", numpy1_names=True)
    for i, net in enumerate(experts):
        save_checkpoint(nnunet_checkpoint(net, plans, configuration, prefixes[1 + i]),
                        folder / f"checkpoint_best{i + 1}.pth", numpy1_names=i % 2 == 0)
    return experts, gate


def reference_mome(experts: list[nn.Module], gate: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The released code's forward, written out: gate([x, f_1..f_5]); sum_i logits_i * gate[:, 2i:2i+2]."""
    logits, stems = [], []
    for net in experts:
        skips = net.encoder(x)
        logits.append(net.decoder(skips))
        stems.append(skips[0])
    weights = gate.decoder(gate.encoder(torch.cat([x, *stems], dim=1)))
    out = []
    for level, w in enumerate(weights):
        fused = torch.zeros_like(logits[0][level])
        for i in range(len(experts)):
            fused = fused + logits[i][level] * w[:, N_CLASSES * i:N_CLASSES * (i + 1)]
        out.append(fused)
    return out
