"""Evaluation: per-image metrics, averaging levels, the paper's tables and figures.

Heavy dependencies (torch/MONAI for HD95, matplotlib, scikit-learn) are imported inside the functions
that need them.
"""

from mome.evaluation.evaluate import evaluate_predictions, match_predictions
from mome.evaluation.metrics import (
    EMPTY_MASK_CONVENTION,
    ImageMetrics,
    LesionCounts,
    compute_metrics,
    dice,
    hd95,
    lesion_counts,
    lesion_f1,
    volume_ml,
)
from mome.evaluation.result import CaseRow, EvalResult, TaskInfo, load_evaluation
from mome.evaluation.tables import (
    Table,
    comparison_tables,
    supplementary_table1,
    table1_seen,
    table2_unseen,
    table3_ablations,
    tables_dict,
    tables_markdown,
)

__all__ = [
    "EMPTY_MASK_CONVENTION", "CaseRow", "EvalResult", "ImageMetrics", "LesionCounts", "Table", "TaskInfo",
    "comparison_tables", "compute_metrics", "dice", "evaluate_predictions", "hd95", "lesion_counts",
    "lesion_f1", "load_evaluation", "match_predictions", "supplementary_table1", "table1_seen",
    "table2_unseen", "table3_ablations", "tables_dict", "tables_markdown", "volume_ml",
]
