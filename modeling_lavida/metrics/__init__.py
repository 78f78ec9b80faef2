"""Video anomaly detection metrics.

Plain functions (numpy in, floats out), also wrapped as a local ``evaluate`` module in ``vad_metrics/``:

    from lavida.metrics import frame_metrics, PixelAUCAccumulator, rbdc_tbdc_from_detections
    metric = lavida.metrics.load_vad_metric("pixel")   # == evaluate.load(lavida.metrics.METRIC_MODULE_DIR, "pixel")
"""

from __future__ import annotations

from pathlib import Path

from .vad_metrics.frame_scores import (MACRO_POLICIES, MacroAUC, average_precision, eer_from_roc, equal_error_rate,
                                       frame_metrics, macro_auc, micro_auc, pr_auc_trapezoid, smooth_scores,
                                       video_auc)
from .vad_metrics.pixel_scores import (DEFAULT_COVERAGE, PixelAUCAccumulator, PixelCriterionAccumulator,
                                       criterion_frame_score, pixel_auc, pixel_criterion_metrics)
from .vad_metrics.region_scores import (DEFAULT_IOU, DEFAULT_MAX_FPR, DEFAULT_TRACK_FRACTION, Detections, Track,
                                        VideoRegionMatch, box_iou, largest_component_box, match_video, rbdc_tbdc,
                                        rbdc_tbdc_from_detections, regions_from_map)

METRIC_MODULE_DIR = Path(__file__).resolve().parent / "vad_metrics"


def load_vad_metric(config_name: str = "frame", **kwargs):
    """``evaluate.load`` of the local metric module (``"frame"``, ``"pixel"`` or ``"region"``)."""
    import evaluate

    return evaluate.load(str(METRIC_MODULE_DIR), config_name, **kwargs)


__all__ = ["DEFAULT_COVERAGE", "DEFAULT_IOU", "DEFAULT_MAX_FPR", "DEFAULT_TRACK_FRACTION", "MACRO_POLICIES",
           "METRIC_MODULE_DIR", "MacroAUC", "PixelAUCAccumulator", "PixelCriterionAccumulator", "Detections", "Track",
           "VideoRegionMatch", "average_precision", "box_iou", "criterion_frame_score", "eer_from_roc",
           "equal_error_rate", "frame_metrics", "largest_component_box", "load_vad_metric", "macro_auc",
           "match_video", "micro_auc", "pixel_auc", "pixel_criterion_metrics", "pr_auc_trapezoid", "rbdc_tbdc",
           "rbdc_tbdc_from_detections", "regions_from_map", "smooth_scores", "video_auc"]
