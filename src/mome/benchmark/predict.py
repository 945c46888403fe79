"""Predict every test case of a collection with one trained system, whatever its kind.

MoME, the single U-Net and the ablations have one network; the task-specific baseline has one per task
(dataset x modality); Multi-Talent needs the image's dataset (not applicable to unseen datasets, so those
cases are skipped and reported as such); Hermes needs the modality and the task (its task vocabulary is
the lesion type by default, which unseen datasets share); SAM-Med3D is interactive: its clicks are
simulated from each case's reference mask (:mod:`mome.inference.interactive`), and the Dice after every
click goes to ``<predictions>/clicks/<case id>.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from mome.data.collection import Case
from mome.errors import CheckpointError


class SystemPredictor:
    """Build (and cache) the right :class:`~mome.inference.predictor.Predictor` for each case."""

    def __init__(self, run_dir: Path, precision: str = "fp32", device: str = "auto",
                 patch_size: str | tuple[int, int, int] | None = None, seed: int = 0):
        self.run_dir = Path(run_dir)
        self.options = {"precision": precision, "device": device, "patch_size": patch_size}
        self.seed = int(seed)
        self._cache: dict[tuple, object] = {}
        self._members = self._find_members()

    def _find_members(self) -> dict[str, Path]:
        """task -> model folder for task-specific runs; "" -> the folder of a one-network run."""
        from mome.weights.store import read_model_record

        if (self.run_dir / "final").is_dir():
            return {"": self.run_dir / "final"}
        members = {}
        for folder in sorted(self.run_dir.glob("tasks/*/final")):
            task = read_model_record(folder).get("task")
            if task:
                members[task] = folder
        if not members:
            raise CheckpointError(f"{self.run_dir} holds no trained network (no final/ model folder)")
        return members

    def predictor_for(self, case: Case):
        """The predictor for ``case``, or None when the system does not apply to it."""
        folder = self._members.get("") or self._members.get(case.task)
        if folder is None:
            return None
        condition = self._condition(folder, case)
        if condition is False:
            return None
        key = (str(folder), tuple(sorted((condition or {}).items())))
        if key not in self._cache:
            self._cache[key] = self._build(folder, condition)
        return self._cache[key]

    def _condition(self, folder: Path, case: Case):
        from mome.weights.store import read_model_record

        kind = read_model_record(folder)["config"].get("kind")
        if kind == "MultiTalentConfig":
            datasets = read_model_record(folder)["config"].get("datasets", [])
            return {"dataset": case.dataset} if case.dataset in datasets else False
        if kind == "HermesConfig":
            from mome.model.config import config_from_dict

            cfg = config_from_dict(read_model_record(folder)["config"])
            task = cfg.task_name(dataset=case.dataset, modality=case.modality, lesion_type=case.lesion_type)
            return {"modality": case.modality, "task": task} if task in cfg.tasks else False
        return None

    def _build(self, folder: Path, condition: dict | None):
        from mome.inference.interactive import DEFAULT_CLICKS, InteractivePredictor, is_interactive
        from mome.inference.predictor import Predictor
        from mome.weights.store import load_model, read_model_record

        model = load_model(folder)
        if is_interactive(read_model_record(folder)):
            return InteractivePredictor(model, read_model_record(folder), n_clicks=DEFAULT_CLICKS, seed=self.seed,
                                        device=self.options["device"])
        if condition:
            model = model.conditioned(**condition)
        return Predictor.from_record(model, read_model_record(folder), gates=False, **self.options)


def predict_cases(system: SystemPredictor, cases: list[Case], out_dir: Path,
                  progress: Callable[[int, int, str], None] | None = None) -> list[str]:
    """Write ``out_dir/<case id>.nii.gz`` for every case the system applies to; return the skipped ids.

    Masks are written in the case image's exact geometry. Existing predictions are kept (resumable).
    """
    import nibabel as nib

    from mome.utils.nifti import save_nifti

    out_dir.mkdir(parents=True, exist_ok=True)
    skipped = []
    for i, case in enumerate(cases):
        target = out_dir / f"{case.id}.nii.gz"
        predictor = system.predictor_for(case)
        if predictor is None:
            skipped.append(case.id)
        elif not target.exists():
            img = nib.load(str(case.image))
            if getattr(predictor, "n_clicks", None):
                mask = _predict_interactive(predictor, img, case, out_dir / "clicks" / f"{case.id}.json")
            else:
                mask = predictor.predict_image(img).mask
            save_nifti(mask.astype(np.uint8), img.affine, target)
        if progress:
            progress(i + 1, len(cases), case.id)
    return skipped


def _predict_interactive(predictor, img, case: Case, record_path: Path) -> np.ndarray:
    """Segment ``case`` with clicks simulated from its reference; write the per-click Dice record."""
    import json

    import nibabel as nib

    reference = np.asarray(nib.load(str(case.label)).dataobj) > 0
    if not reference.any():  # nothing to click on: SAM-Med3D's evaluation returns an empty mask
        record = {"case": case.id, "clicks": 0, "note": "empty reference: no clicks, empty mask"}
        mask = np.zeros(reference.shape, dtype=np.uint8)
    else:
        pred = predictor.predict_image(img, reference)
        record = {"case": case.id, **{k: pred.info[k] for k in ("clicks", "click_rule", "seed", "click_dice",
                                                                 "best_click_dice", "best_click", "click_labels")}}
        mask = pred.mask
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1))
    return mask


def click_summary(pred_dir: Path) -> dict | None:
    """Mean Dice after each click and of the best click over an interactive system's predictions."""
    import json

    records = [json.loads(p.read_text()) for p in sorted((pred_dir / "clicks").glob("*.json"))]
    records = [r for r in records if r.get("clicks")]
    if not records:
        return None
    curves = np.array([r["click_dice"] for r in records], dtype=np.float64)
    return {"images": len(records), "clicks": int(curves.shape[1]), "rule": records[0]["click_rule"],
            "mean_dice_per_click": [round(float(v), 4) for v in curves.mean(axis=0)],
            "mean_best_click_dice": round(float(np.mean([r["best_click_dice"] for r in records])), 4),
            "images_best_before_last": int(sum(max(r["click_dice"][:-1], default=-1.0) > r["click_dice"][-1]
                                               for r in records))}
