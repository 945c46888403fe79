"""Hand-built evaluation results shared by the evaluation tests."""

from __future__ import annotations

from mome.evaluation.result import CaseRow, EvalResult

# The paper's Supplementary Table I, nnU-Net column: per-task mean Dice (dataset, modality, Dice).
PAPER_NNUNET = [
    ("BraTS2021", "T1", 0.8344), ("BraTS2021", "T2", 0.8868), ("BraTS2021", "T1ce", 0.8816),
    ("BraTS2021", "FLAIR", 0.9165), ("ATLAS2.0", "T1", 0.5685), ("WMH2017", "FLAIR", 0.6726),
    ("WMH2017", "T1", 0.5387), ("OASIS", "T1", 0.5638), ("OASIS", "FLAIR", 0.7241), ("ISLES2022", "DWI", 0.7415),
    ("MSSEG", "T1", 0.4664), ("MSSEG", "T2", 0.4219), ("MSSEG", "T1ce", 0.4375), ("MSSEG", "FLAIR", 0.6619),
    ("Tumour1", "FLAIR", 0.8358), ("Tumour2", "T2", 0.7959), ("WMHsMix", "FLAIR", 0.7032),
]
PAPER_LESION = {"BraTS2021": "tumour", "ATLAS2.0": "stroke_chronic", "WMH2017": "wmh", "OASIS": "wmh",
                "ISLES2022": "stroke_acute", "MSSEG": "ms", "Tumour1": "tumour", "Tumour2": "tumour",
                "WMHsMix": "wmh"}
PAPER_UNSEEN = {"Tumour1", "Tumour2", "WMHsMix"}


def paper_result(name="nnU-Net", seen_only=False, scale=1.0) -> EvalResult:
    """One row per task carrying the task's published mean Dice (times ``scale``)."""
    rows = [CaseRow(f"{d}_{m}", d, m, PAPER_LESION[d], d not in PAPER_UNSEEN,
                    {"dice": v * scale, "hd95_mm": 10 / scale}, {"empty": "none"})
            for d, m, v in PAPER_NNUNET if not (seen_only and d in PAPER_UNSEEN)]
    return EvalResult(rows, name=name)


def row(i, dataset, modality, d, seen=True, lesion="ms", empty="none"):
    return CaseRow(f"c{i}", dataset, modality, lesion, seen,
                   {"dice": d, "hd95_mm": 2.0 * i, "avd_ml": 0.1 * i, "lesion_f1": d}, {"empty": empty})
