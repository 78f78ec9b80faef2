"""Video anomaly detection metrics as a local ``evaluate`` module.

    import evaluate
    frame = evaluate.load("path/to/vad_metrics")                  # one example = one video
    frame.compute(predictions=[[0.1, 0.9, ...], ...], references=[[0, 1, ...], ...], smoothing_sigma=0.0)
    pixel = evaluate.load("path/to/vad_metrics", "pixel")         # one example = one frame, pixels flattened
    pixel.compute(predictions=[frame_scores.ravel(), ...], references=[frame_mask.ravel(), ...])
    region = evaluate.load("path/to/vad_metrics", "region")       # one example = one video
    region.compute(predictions=[{"frames": [...], "boxes": [[x0, y0, x1, y1], ...], "scores": [...]}, ...],
                   references=[{"track_ids": [...], "frames": [...], "boxes": [...], "num_frames": F}, ...])

The computations live in the plain-Python modules next to this file (``frame_scores``, ``pixel_scores``,
``region_scores``), built on sklearn and scipy; call them directly for large inputs (the pixel metrics stream frame by
frame there instead of holding every pixel in Arrow). The definitions and conventions are in those modules' docstrings
and in README.md.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

from .frame_scores import frame_metrics
from .pixel_scores import DEFAULT_COVERAGE, PixelAUCAccumulator, PixelCriterionAccumulator
from .region_scores import DEFAULT_IOU, DEFAULT_MAX_FPR, DEFAULT_TRACK_FRACTION, Detections, Track
from .region_scores import rbdc_tbdc_from_detections

_DESCRIPTION = """Frame-level (micro/macro ROC-AUC, AP, trapezoid PR-AUC, EER, optional Gaussian smoothing),
pixel-level (pooled pixel ROC-AUC at native resolution, the traditional 40 % pixel criterion) and region/track-level
(RBDC, TBDC) metrics for video anomaly detection."""

_CITATION = """@inproceedings{ramachandra2020street, title={Street Scene: A new dataset and evaluation protocol for
video anomaly detection}, author={Ramachandra, Bharathkumar and Jones, Michael J.}, booktitle={WACV}, year={2020}}
@inproceedings{mahadevan2010anomaly, title={Anomaly detection in crowded scenes}, author={Mahadevan, Vijay and Li,
Weixin and Bhalodia, Viral and Vasconcelos, Nuno}, booktitle={CVPR}, year={2010}}"""

_INPUTS = """
"frame" (default): predictions: per video, one score per frame (higher = more anomalous); references: per video, one
    0/1 label per frame. Keyword: smoothing_sigma (frames, 0 = none; reported in the output when used).
"pixel": predictions: per frame, its pixel scores flattened; references: per frame, its 0/1 mask flattened in the same
    order. Keyword: coverage (0.4).
"region": predictions: per video, {"frames", "boxes", "scores"} of predicted regions; references: per video,
    {"track_ids", "frames", "boxes", "num_frames"} with one entry per ground-truth region (boxes x_min, y_min, x_max,
    y_max, max exclusive). Keywords: iou_threshold (0.1), track_fraction (0.1), max_fpr (1.0).
"""

_FEATURES = {
    "frame": datasets.Features({"predictions": datasets.Sequence(datasets.Value("float64")),
                                "references": datasets.Sequence(datasets.Value("int32"))}),
    "pixel": datasets.Features({"predictions": datasets.Sequence(datasets.Value("float32")),
                                "references": datasets.Sequence(datasets.Value("int8"))}),
    "region": datasets.Features({
        "predictions": {"frames": datasets.Sequence(datasets.Value("int64")),
                        "boxes": datasets.Sequence(datasets.Sequence(datasets.Value("float64"))),
                        "scores": datasets.Sequence(datasets.Value("float64"))},
        "references": {"track_ids": datasets.Sequence(datasets.Value("int64")),
                       "frames": datasets.Sequence(datasets.Value("int64")),
                       "boxes": datasets.Sequence(datasets.Sequence(datasets.Value("float64"))),
                       "num_frames": datasets.Value("int64")},
    }),
}


def _tracks(reference: dict) -> list[Track]:
    track_ids = np.asarray(reference["track_ids"], dtype=np.int64)
    frames = np.asarray(reference["frames"], dtype=np.int64)
    boxes = np.asarray(reference["boxes"], dtype=np.float64).reshape(-1, 4)
    return [Track(int(i), frames[track_ids == i], boxes[track_ids == i]) for i in np.unique(track_ids)]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class VadMetrics(evaluate.Metric):
    """Video anomaly detection metrics; the configuration ("frame", "pixel", "region") picks the input kind."""

    def _info(self) -> evaluate.MetricInfo:
        name = self.config_name if self.config_name in _FEATURES else "frame"
        return evaluate.MetricInfo(description=_DESCRIPTION, citation=_CITATION, inputs_description=_INPUTS,
                                   features=_FEATURES[name],
                                   reference_urls=["https://arxiv.org/abs/1910.05313"])

    def _compute(self, predictions, references, smoothing_sigma: float = 0.0, coverage: float = DEFAULT_COVERAGE,
                 iou_threshold: float = DEFAULT_IOU, track_fraction: float = DEFAULT_TRACK_FRACTION,
                 max_fpr: float = DEFAULT_MAX_FPR) -> dict:
        if self.config_name == "pixel":
            pixels = PixelAUCAccumulator()
            criterion = PixelCriterionAccumulator(coverage=coverage)
            for scores, target in zip(predictions, references):
                scores = np.asarray(scores, dtype=np.float32)
                target = np.asarray(target, dtype=np.int8)
                pixels.update(scores, target)
                criterion.update(scores, target)
            result = criterion.result()
            return {"pixel_auc": pixels.auc(), "pixel_criterion_auc": result["auc"],
                    "pixel_criterion_eer": result["eer"], "num_frames": result["num_frames"],
                    "num_pixels": pixels.num_pixels, "coverage": coverage}
        if self.config_name == "region":
            detections = [Detections(p["frames"], np.asarray(p["boxes"], dtype=np.float64).reshape(-1, 4),
                                     p["scores"]) for p in predictions]
            tracks = [_tracks(r) for r in references]
            num_frames = int(sum(r["num_frames"] for r in references))
            result = rbdc_tbdc_from_detections(detections, tracks, num_frames, iou_threshold, track_fraction,
                                               max_fpr)
            return {**result, "iou_threshold": iou_threshold, "track_fraction": track_fraction, "max_fpr": max_fpr}
        labels = [np.asarray(r, dtype=np.int64) for r in references]
        scores = [np.asarray(p, dtype=np.float64) for p in predictions]
        return frame_metrics(labels, scores, smoothing_sigma=smoothing_sigma)
