"""Run-folder outputs written during training: the per-epoch CSV log and the "best" weights.

Lightning's ``CSVLogger`` is not used for the log: it flushes every N steps, so after a SIGKILL and a
resume from the last epoch checkpoint its file would hold rows of epochs that are then trained again.
:class:`EpochLog` writes exactly one row per finished epoch (flushed and fsynced) and, on resume,
drops the rows of epochs after the checkpoint.
"""

from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path

import lightning as L

from mome.training.module import TrainingModule

LOG_FILE = "log.csv"
BASE_COLUMNS = ["epoch", "optimizer_steps", "lr"]
TAIL_COLUMNS = ["monitor_ema", "best", "seconds"]


class EpochLog(L.Callback):
    """Append one CSV row per epoch and keep the best weights (lowest EMA of the monitored loss).

    Args:
        folder: the member's run folder (``log.csv`` and ``best/`` go there).
        columns: objective columns after the base ones (terms, then summaries).
        monitor: the epoch term to smooth (see :attr:`Objective.monitor`).
        ema: smoothing factor of the monitored loss (``ema = a * ema + (1 - a) * value``).
        save_best: callable ``(network, folder, metadata)`` writing a model folder.
        metadata: extra facts for the best model folder.
    """

    def __init__(self, folder: str | os.PathLike, columns: list[str], monitor: str, ema: float, save_best,
                 metadata: dict):
        self.folder = Path(folder)
        self.columns = BASE_COLUMNS + [c for c in columns if c not in BASE_COLUMNS] + TAIL_COLUMNS
        self.monitor = monitor
        self.alpha = float(ema)
        self.save_best = save_best
        self.metadata = metadata
        self.ema: float | None = None
        self.best: float | None = None
        self.best_epoch: int | None = None
        self._t0 = time.perf_counter()

    @property
    def path(self) -> Path:
        return self.folder / LOG_FILE

    def state_dict(self) -> dict:
        return {"ema": self.ema, "best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        self.ema = state_dict.get("ema")
        self.best = state_dict.get("best")
        self.best_epoch = state_dict.get("best_epoch")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._truncate(trainer.current_epoch)
        self._t0 = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: TrainingModule) -> None:
        row = pl_module.epoch_summary()
        value = row.get(self.monitor, math.nan)
        improved = False
        if math.isfinite(value):
            self.ema = value if self.ema is None else self.alpha * self.ema + (1 - self.alpha) * value
            if self.best is None or self.ema < self.best:
                self.best, self.best_epoch, improved = self.ema, int(row["epoch"]), True
        row.update({"monitor_ema": self.ema, "best": int(improved), "seconds": time.perf_counter() - self._t0})
        if trainer.is_global_zero:
            if improved:
                meta = {**self.metadata, "epoch": int(row["epoch"]), "optimizer_steps": int(row["optimizer_steps"]),
                        "selected_by": f"lowest EMA ({self.alpha}) of the epoch-mean training {self.monitor}",
                        "monitor_ema": self.ema}
                self.save_best(pl_module.network, self.folder / "best", meta)
            self._append(row)

    def _append(self, row: dict) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(row.get(k)) for k in self.columns})
            fh.flush()
            os.fsync(fh.fileno())

    def _truncate(self, start_epoch: int) -> None:
        """Keep only rows of epochs before ``start_epoch`` (the ones the resumed checkpoint contains)."""
        if not self.path.exists():
            return
        with open(self.path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("epoch", "").isdigit() and int(r["epoch"]) < start_epoch]
        from mome.utils.atomic import atomic_path

        with atomic_path(self.path, overwrite=True) as tmp:
            with open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return str(v)
