"""The Lightning module shared by every system: SGD + poly LR, gradient clipping, epoch statistics."""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import nn

from mome.errors import ConfigError
from mome.training.config import TrainConfig
from mome.training.objectives import Objective


class TrainingModule(L.LightningModule):
    """Trains ``network`` with ``objective`` under ``config``.

    * Optimizer: SGD (momentum 0.99, Nesterov, weight decay 3e-5 by default) and torch's
      ``PolynomialLR`` stepped once per epoch: ``lr = initial_lr * (1 - epoch / epochs) ** 0.9``.
    * Gradient clipping by norm (nnU-Net: 12) over the parameters the objective names for
      ``config.grad_clip_scope`` (every parameter, the gate only, or none).
    * :meth:`epoch_summary` (called by :class:`~mome.training.callbacks.EpochLog` at the end of each
      epoch, on every process) gives the epoch means of the objective's terms and its summarised sums,
      reduced over DDP processes, with the learning rate used and the optimizer step count.
    """

    def __init__(self, network: nn.Module, objective: Objective, config: TrainConfig):
        super().__init__()
        self.network = network
        if hasattr(network, "set_deep_supervision"):
            network.set_deep_supervision(config.deep_supervision)
        if config.gradient_checkpointing:
            if not hasattr(network, "set_gradient_checkpointing"):
                raise ConfigError(f"{type(network).__name__} does not support gradient checkpointing")
            network.set_gradient_checkpointing(True)
        self.objective = objective
        self.config = config
        # training-only modules of the objective (e.g. the tissue head): trained and checkpointed for
        # resuming, never part of the saved network
        self.auxiliary = objective.auxiliary(network) if objective is not None else None
        self._reset()

    def _reset(self) -> None:
        self._term_sums: dict[str, torch.Tensor] = {}
        self._steps = 0
        self._sums: dict[str, torch.Tensor] = {}

    def configure_optimizers(self):
        cfg = self.config
        custom = self.objective.configure_optimizer(self.network, cfg)
        if custom is not None:
            return custom
        extra = list(self.auxiliary.parameters()) if self.auxiliary is not None else []
        params = list(self.network.parameters()) + extra
        gate = getattr(self.network, "gate", None)
        if gate is not None and float(cfg.gate_lr_scale) != 1.0:  # the gate on its own learning rate
            gate_ids = {id(p) for p in gate.parameters()}
            params = [{"params": [p for p in self.network.parameters() if id(p) not in gate_ids] + extra},
                      {"params": list(gate.parameters()), "lr": cfg.initial_lr * float(cfg.gate_lr_scale)}]
        optimizer = torch.optim.SGD(params, lr=cfg.initial_lr, momentum=cfg.momentum,
                                    nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=cfg.epochs, power=cfg.lr_exponent)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def on_train_epoch_start(self) -> None:
        self._reset()
        self._lr = float(self.trainer.optimizers[0].param_groups[0]["lr"])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        result = self.objective.step(self.network, batch, self.current_epoch, self.config.epochs)
        if not torch.isfinite(result.loss):
            from mome.errors import MomeError

            raise MomeError(f"non-finite training loss ({float(result.loss)}) at epoch {self.current_epoch}, step "
                            f"{batch_idx}; rerun the same command to resume from the last epoch, or start again "
                            f"with --precision 32 (if bf16) or a lower --lr")
        for k, v in result.terms.items():
            v = v.detach().double().cpu()
            self._term_sums[k] = self._term_sums.get(k, torch.zeros((), dtype=torch.float64)) + v
        for k, v in result.sums.items():
            v = v.detach().double().cpu()
            self._sums[k] = self._sums[k] + v if k in self._sums else v.clone()
        self._steps += 1
        self.log("loss", result.loss.detach(), prog_bar=True, on_step=True, on_epoch=False, logger=False,
                 batch_size=batch["image"].shape[0])
        return result.loss

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # Lightning's built-in clipping covers every parameter; the released MoME clips only the gate
        params = [p for p in self.objective.clip_parameters(self.network, self.config.grad_clip_scope)
                  if p.grad is not None]
        if params and self.config.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip_norm)

    def epoch_summary(self) -> dict[str, float]:
        """The finished epoch's log row (a collective call under DDP: every process must make it)."""
        terms = {k: self._reduce(v) for k, v in self._term_sums.items()}
        steps = self._reduce(torch.tensor(float(self._steps), dtype=torch.float64))
        sums = {k: self._reduce(v) for k, v in self._sums.items()}
        log = {"epoch": self.current_epoch, "optimizer_steps": int(self.global_step), "lr": self._lr}
        for name in self.objective.term_names:
            log[name] = float(terms[name] / steps) if name in terms and float(steps) > 0 else math.nan
        log.update(self.objective.summarise(sums))
        return log

    def _reduce(self, value: torch.Tensor) -> torch.Tensor:
        """Sum over DDP processes (identity when there is one)."""
        if self.trainer.world_size <= 1:
            return value
        reduced = self.trainer.strategy.reduce(value.to(self.device, torch.float64), reduce_op="sum")
        return reduced.cpu()
