"""CPU inference backends behind the predictors: eager PyTorch, or the network compiled by OpenVINO.

OpenVINO (a dependency of mome; a platform without its wheels falls back to PyTorch) runs the same network
with its own CPU kernels, measured faster than eager PyTorch for mome's 3D U-Nets on 2 cores
(``benchmarks/inference.py``, docs/performance.md). The network is traced once (``torch.jit.trace``),
converted (``openvino.convert_model``) with dynamic batch and spatial sizes, and the converted model is cached
(:func:`cache_root`) under a key made of the weights' hash, the outputs asked for and the versions of
openvino, torch and mome: the conversion (about 10-60 s) is paid once per model, not per scan.

``auto`` (the predictors' default) takes OpenVINO on a CPU when it is installed and the options allow it
(not with expert skipping or grouped experts, which are PyTorch code paths), else eager PyTorch; asking for
``openvino`` without it installed falls back to PyTorch with a one-line note.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import torch
from torch import nn

from mome.errors import ConfigError

BACKENDS = ("auto", "torch", "openvino")
INSTALL_HINT = "pip install openvino"


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def default_backend() -> str:
    """``$MOME_BACKEND`` when set (e.g. ``torch`` on machines where OpenVINO is unwanted), else ``auto``."""
    value = os.environ.get("MOME_BACKEND", "").strip() or "auto"
    if value not in BACKENDS:
        raise ConfigError(f"MOME_BACKEND={value!r} is not a backend; use one of {', '.join(BACKENDS)}")
    return value


def cpu_capability() -> str:
    """PyTorch's name for this CPU's vector instruction set (``AVX2``, ``AVX512``, ...)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # pragma: no cover - very old or unusual builds
        return "unknown"


def resolve_backend(backend: str, device: torch.device, *, supported: bool = True,
                    note: Callable[[str], None] | None = None) -> str:
    """``auto`` -> ``openvino`` on a CPU where it is installed and ``supported``, else ``torch``.

    An explicit ``openvino`` on a GPU, or with options it cannot run, is a :class:`ConfigError`; without
    openvino installed it falls back to ``torch`` with a note (``note``, default :func:`warnings.warn`).
    In a process with a malloc replacement preloaded (tcmalloc, jemalloc), where OpenVINO aborts, ``auto``
    gives ``torch`` with a note and ``openvino`` is a :class:`ConfigError`.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return "torch"
    say = note or (lambda m: warnings.warn(m, stacklevel=3))
    allocator = None
    if device.type == "cpu" and openvino_available():
        from mome.utils.tcmalloc import preloaded_allocator

        allocator = preloaded_allocator()
    if backend == "auto":
        if device.type != "cpu" or not supported or not openvino_available():
            return "torch"
        if allocator:
            say(f"OpenVINO is not used in a process with {allocator} preloaded (it aborts there): running eager "
                "PyTorch (run mome without LD_PRELOAD for the faster OpenVINO backend)")
            return "torch"
        return "openvino"
    if device.type != "cpu":
        raise ConfigError(f"--backend openvino runs on the CPU; this run is on {device.type} (use --device cpu)")
    if not supported:
        raise ConfigError("--backend openvino cannot run expert skipping or grouped experts (PyTorch code paths); "
                          "drop those options or use --backend torch")
    if not openvino_available():
        say(f"openvino is not installed ({INSTALL_HINT}): running eager PyTorch instead")
        return "torch"
    if allocator:
        raise ConfigError(f"--backend openvino aborts in a process with {allocator} preloaded (LD_PRELOAD; "
                          "openvino issue 29025): run without it, or use --backend torch")
    return "openvino"


def cache_root() -> Path:
    """``$MOME_OPENVINO_CACHE``, else ``$MOME_CACHE/openvino``, else ``~/.cache/mome/openvino``."""
    if os.environ.get("MOME_OPENVINO_CACHE"):
        return Path(os.environ["MOME_OPENVINO_CACHE"])
    return Path(os.environ.get("MOME_CACHE", Path.home() / ".cache" / "mome")) / "openvino"


def weights_key(module: nn.Module, tag: str) -> str:
    """sha256 of the module's parameters and buffers (names, shapes, dtypes, bytes) and ``tag``."""
    h = hashlib.sha256(tag.encode())
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:32]


def import_openvino():
    """``import openvino`` without its usage telemetry.

    ``import openvino`` and ``openvino.convert_model`` send usage events to Intel (the openvino-telemetry
    package assumes consent when no consent file exists; it also writes ``~/intel``). mome runs inside a
    user's prediction on clinical data and never asked for that, so openvino-telemetry is made unimportable
    for this process before openvino's first import: openvino then uses its own no-op telemetry stub
    (its modules fall back to it on ImportError). Measured: no ``~/intel`` is created, nothing is sent.
    """
    if "openvino" not in sys.modules and "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # a None entry makes ``import openvino_telemetry`` fail
    import openvino

    return openvino


@functools.cache
def _core():
    """The process's one ``openvino.Core``, never released before exit.

    Each Core loads its own CPU plugin, and each plugin swaps the thread's signal stack for one of its own
    and restores the one it found when it is released (openvino's ``SigAltStackSetup``). Cores released out
    of creation order leave the thread with an unmapped signal stack: the next signal (Ctrl-C, SIGTERM)
    then killed the process with a segfault instead of mome's clean exit. One Core has no such order.
    """
    return import_openvino().Core()


def compile_cpu(model, threads: int, precision: str = "fp32"):
    """``model`` (an ``openvino.Model``) compiled for the CPU: ``threads`` threads, latency-first, fp32 or bf16."""
    config = {"INFERENCE_NUM_THREADS": int(threads), "PERFORMANCE_HINT": "LATENCY",
              "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
    return _core().compile_model(model, "CPU", config)


def _looks_like_ir(folder: Path) -> bool:
    """Whether a cache entry is an OpenVINO IR (an XML ``<net>`` with its weights file) before OpenVINO reads it.

    A file that is not IR makes ``read_model`` try every other frontend on it (TensorFlow's text-format
    parser among them, which prints its parse errors on stderr): a damaged entry is rebuilt without that.
    """
    xml, weights = folder / "model.xml", folder / "model.bin"
    if not (xml.is_file() and weights.is_file()):
        return False
    try:
        for _, element in ElementTree.iterparse(xml, events=("start",)):
            return element.tag == "net"  # only the root is needed; the weights are checked by OpenVINO
    except (ElementTree.ParseError, OSError):
        return False
    return False


def _versions() -> str:
    openvino = import_openvino()

    from mome import __version__

    return f"openvino {openvino.__version__}|torch {torch.__version__}|mome {__version__}"


# Changes whenever the exported graph changes for the same weights, so that older cache entries are not reused.
EXPORT_REVISION = "staged-instance-norm"


class StagedInstanceNorm(nn.Module):
    """``nn.InstanceNorm3d`` (instance statistics, optional affine) with each mean reduced one axis at a time.

    Written by hand for the OpenVINO export only: OpenVINO's MVN kernel (what it makes of an instance norm,
    and of the same norm written out as means) sums a whole channel in float32 one element after the other,
    so on a 96x112x96 volume the mean and variance lose 2-3 digits (a channel's mean off by up to 4e-3 of its
    standard deviation on a real T1ce, exactly a sequential float32 sum's error). Through 20 normalisations
    this put the embedded model's probabilities up to 0.08 away from PyTorch's. Three reductions of about
    100 elements each keep float32's precision (error 9e-7 vs 2e-5 for one norm) and run faster in OpenVINO
    (22 vs 77 ms for 8x96x112x96 on 2 cores).
    """

    def __init__(self, norm: nn.InstanceNorm3d):
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, float(norm.eps)

    @staticmethod
    def _mean(t: torch.Tensor) -> torch.Tensor:
        # sums and means alternate: OpenVINO merges consecutive reductions of one kind back into one
        summed = 1
        for i, dim in enumerate(range(t.dim() - 1, 1, -1)):
            if i % 2:
                summed = summed * t.shape[dim]
                t = t.sum(dim=dim, keepdim=True)
            else:
                t = t.mean(dim=dim, keepdim=True)
        return t / summed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - self._mean(x)
        out = centred * torch.rsqrt(self._mean(centred * centred) + self.eps)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if self.weight is not None:
            out = out * self.weight.view(shape)
        if self.bias is not None:
            out = out + self.bias.view(shape)
        return out


def with_staged_instance_norms(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every instance-statistics ``InstanceNorm3d`` as :class:`StagedInstanceNorm`
    (the same function; ``module`` itself is not changed)."""
    import copy

    module = copy.deepcopy(module)
    for name, child in list(module.named_modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, nn.InstanceNorm3d) and not sub.track_running_stats:
                setattr(child, attr, StagedInstanceNorm(sub))
    return module


class OpenVINONetwork(nn.Module):
    """``module`` ((B, 1, X, Y, Z) -> tensor or tuple of tensors) run by OpenVINO on the CPU.

    Keeps ``module`` as a child (so ``state_dict`` and callers that inspect the network still see it) and
    returns what it returns, as float32 CPU tensors. ``example_shape``: a spatial size the network accepts
    (used only to trace; any size that the network accepts works afterwards).

    Args:
        precision: ``fp32`` or ``bf16`` (OpenVINO's inference precision hint; ``bf16`` only where the CPU
            computes it natively).
        threads: OpenVINO's thread count (default: ``torch.get_num_threads()``).
        cache: cache the converted model in :func:`cache_root` (a cache that cannot be written is skipped
            with a note; the prediction goes on).
    """

    def __init__(self, module: nn.Module, example_shape: tuple[int, int, int], *, precision: str = "fp32",
                 threads: int | None = None, cache: bool = True, tag: str = "",
                 note: Callable[[str], None] | None = None):
        super().__init__()
        ov = import_openvino()

        if precision not in ("fp32", "bf16"):
            raise ConfigError(f"openvino precision must be fp32 or bf16, got {precision!r}")
        self.module = module.eval()
        self.precision = precision
        self.threads = int(threads or torch.get_num_threads())
        note = note or (lambda m: None)
        self.cache_hit = False
        key = weights_key(module, f"{type(module).__name__}|{tag}|{EXPORT_REVISION}|{_versions()}")
        folder = cache_root() / key
        xml = folder / "model.xml"
        model = None
        if cache and _looks_like_ir(folder):
            try:
                model = _core().read_model(str(xml), str(folder / "model.bin"))
                self.cache_hit = True
            except Exception:  # a damaged cache entry is rebuilt, not trusted
                model = None
        if model is None:
            model = self._convert(example_shape)
            if cache:
                self._save(model, folder, note)
                if _looks_like_ir(folder):  # run what later calls will read: saving rewrites the graph a
                    model = _core().read_model(str(xml), str(folder / "model.bin"))  # little (~1e-6 apart)
        self.compiled = compile_cpu(model, self.threads, precision)
        self.version = ov.__version__

    def _convert(self, example_shape):
        ov = import_openvino()

        x = torch.zeros(1, 1, *example_shape)
        # our own trace without the checking re-runs (openvino's default trace runs the network 3 more
        # times: 3x slower conversion for the same graph)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings from shape checks that are constant per trace
            traced = torch.jit.trace(with_staged_instance_norms(self.module), x, check_trace=False)
            return ov.convert_model(traced, example_input=x, input=[ov.PartialShape([-1, 1, -1, -1, -1])])

    @staticmethod
    def _save(model, folder: Path, note) -> None:
        ov = import_openvino()

        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".part-"))
            try:
                ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
                os.replace(tmp, folder)  # atomic: a reader sees a whole entry or none
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError as exc:
            if (folder / "model.xml").is_file():  # another process cached the same model meanwhile
                return
            note(f"the converted model could not be cached in {folder.parent} ({exc.strerror or exc}); "
                 "it will be converted again next time")

    def forward(self, x: torch.Tensor):
        result = self.compiled(np.ascontiguousarray(x.detach().float().cpu().numpy()))
        outs = [torch.from_numpy(np.asarray(result[o])) for o in self.compiled.outputs]
        return outs[0] if len(outs) == 1 else tuple(outs)


class NetworkView(nn.Module):
    """What a predictor needs from one network call, as a traceable module: (B, 1, X, Y, Z) ->
    full-resolution logits, and for a MoME optionally the gates as (B, N*C, ...) and the experts' spread.

    A MoME runs gate-first (:func:`~mome.inference.acceleration.staged_mome_forward`, every expert kept),
    as the PyTorch path does, so both backends compute the same graph.
    """

    def __init__(self, net: nn.Module, *, gates: bool = False, spread: bool = False):
        super().__init__()
        self.net = net
        self.is_mome = hasattr(net, "experts") and hasattr(net, "gate")
        self.gates = bool(gates) and self.is_mome
        self.spread = bool(spread) and self.is_mome

    def forward(self, x: torch.Tensor):
        from mome.inference.acceleration import staged_mome_forward

        if not self.is_mome:
            out = self.net(x)
            logits = getattr(out, "logits", out)
            return (logits[0] if isinstance(logits, (list, tuple)) else logits).float()
        out = staged_mome_forward(self.net, x, spread=self.spread)
        outs = [out.logits.float()]
        if self.gates:
            outs.append(out.gates.reshape(out.gates.shape[0], -1, *out.gates.shape[3:]).float())
        if self.spread:
            outs.append(out.spread.float())
        return outs[0] if len(outs) == 1 else tuple(outs)


def compile_view(net: nn.Module, divisor: tuple[int, int, int], *, gates: bool = False, spread: bool = False,
                 precision: str = "fp32", note: Callable[[str], None] | None = None) -> OpenVINONetwork:
    """:class:`NetworkView` of ``net`` compiled by OpenVINO (traced at twice the divisor: the smallest size
    whose deepest stage still has more than one voxel for instance normalisation)."""
    view = NetworkView(net, gates=gates, spread=spread).eval()
    tag = f"gates={view.gates}|spread={view.spread}"
    return OpenVINONetwork(view, tuple(2 * int(d) for d in divisor), precision=precision, tag=tag, note=note)
