"""What the conditioned baselines share: name -> index lookup and a fixed-condition inference wrapper.

Multi-Talent needs the image's dataset and Hermes its modality and task, while the rest of mome (the
sliding-window :class:`~mome.inference.predictor.Predictor`, evaluation) calls ``model(x)``. A
:class:`ConditionedNetwork` binds the condition once, so those tools run the baselines unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mome.errors import InputError

NameOrNames = str | Sequence[str] | torch.Tensor


def lookup_indices(value: NameOrNames | None, known: Sequence[str], *, what: str, batch: int,
                   device: torch.device, aliases: dict[str, str] | None = None,
                   unknown_hint: str = "") -> torch.Tensor:
    """Map a name, one name per sample, or index tensor to a (batch,) LongTensor of indices into ``known``.

    Names are matched case-insensitively. ``aliases`` maps lower-case extra spellings to known names.

    Args:
        value: one name (used for every sample), a sequence of ``batch`` names, or a (batch,) index tensor.
        known: the names the network was built with, in index order.
        what: what the names are (``dataset``, ``modality``, ``task``), for messages.
        batch: the batch size the result must have.
        device: where the index tensor is put.
        aliases: extra lower-case spellings (e.g. ``t1c`` -> ``T1ce``).
        unknown_hint: appended to the error for an unknown name (why it cannot be used, what to do).

    Raises:
        InputError: ``value`` is missing, an unknown name, an out-of-range index or has the wrong length.
    """
    names = ", ".join(known)
    if value is None:
        raise InputError(f"this network needs the {what} of every image (one of: {names}); none was given")
    if isinstance(value, torch.Tensor):
        idx = value.to(device=device, dtype=torch.long).reshape(-1)
        if idx.numel() == 1 and batch > 1:
            idx = idx.expand(batch)
        if idx.numel() != batch:
            raise InputError(f"got {idx.numel()} {what} indices for a batch of {batch}")
        if bool(((idx < 0) | (idx >= len(known))).any()):
            raise InputError(f"{what} indices must be in [0, {len(known) - 1}] ({names}); got {idx.tolist()}")
        return idx
    table = {k.lower(): i for i, k in enumerate(known)}
    for alias, target in (aliases or {}).items():
        if target.lower() in table:
            table.setdefault(alias.lower(), table[target.lower()])
    items = [value] * batch if isinstance(value, str) else list(value)
    if len(items) != batch:
        raise InputError(f"got {len(items)} {what} names for a batch of {batch} images")
    out = []
    for item in items:
        key = str(item).strip().lower()
        if key not in table:
            hint = f" {unknown_hint}" if unknown_hint else ""
            raise InputError(f"unknown {what} {item!r}; this network knows: {names}.{hint}")
        out.append(table[key])
    return torch.tensor(out, dtype=torch.long, device=device)


class ConditionedNetwork(nn.Module):
    """A conditioned baseline with its condition fixed, callable as ``model(x)`` like any mome network.

    Built by ``MultiTalentNet.conditioned(dataset=...)`` or ``HermesNet.conditioned(modality=..., task=...)``;
    meant for inference (the :class:`~mome.inference.predictor.Predictor` and evaluation). Save the wrapped
    network (``.network``), not this wrapper.

    Attributes:
        network: the wrapped baseline.
        condition: the keyword arguments passed to every forward call.
        config: the backbone's :class:`~mome.model.config.UNetConfig` (what the Predictor reads to pick the
            patch size and padding divisor).
    """

    def __init__(self, network: nn.Module, **condition):
        super().__init__()
        self.network = network
        self.condition = dict(condition)
        self.config = network.config.unet

    def set_deep_supervision(self, enabled: bool) -> None:
        self.network.set_deep_supervision(enabled)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Two-class logits per deep-supervision level, highest resolution first."""
        out = self.network(x, **self.condition)
        return list(getattr(out, "logits", out))

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.condition.items())
