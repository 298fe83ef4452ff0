"""Evaluation: EPE/PCK/AUC by hand3d's protocol, reports, and paper-style figures.

``metrics`` is re-exported here (the trainer uses it); ``report`` and ``figures`` import
matplotlib and are imported explicitly (``from handvae.evaluation import report``).
"""

from handvae.evaluation.metrics import (
    AUC_20_50_FIRST_INDEX,
    PCK_THRESHOLDS_MM,
    auc,
    keypoint_errors_mm,
    pck_curve,
    summarize_errors,
)

__all__ = [
    "AUC_20_50_FIRST_INDEX",
    "PCK_THRESHOLDS_MM",
    "auc",
    "keypoint_errors_mm",
    "pck_curve",
    "summarize_errors",
]
