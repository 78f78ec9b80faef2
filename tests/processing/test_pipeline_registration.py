"""How ``pipeline("video-anomaly-detection", ...)`` resolves its class when the package is installed."""

from __future__ import annotations

import pytest
from transformers import pipeline

import lavida
from lavida.processing.pipeline_lavida import TASK, VideoAnomalyDetectionPipeline


def test_the_package_exports_the_pipeline_class():
    assert lavida.VideoAnomalyDetectionPipeline is VideoAnomalyDetectionPipeline
    assert "VideoAnomalyDetectionPipeline" in lavida.__all__


def test_pipeline_class_runs_the_installed_code_on_a_saved_checkpoint(tiny_lavida_checkpoint):
    """A saved checkpoint declares ``custom_pipelines``; ``pipeline_class`` picks the package's class, no remote code."""
    detector = pipeline(TASK, model=str(tiny_lavida_checkpoint), pipeline_class=lavida.VideoAnomalyDetectionPipeline,
                        device="cpu")
    assert type(detector) is VideoAnomalyDetectionPipeline
    assert type(detector.model).__module__ == "lavida.modeling_lavida"


def test_without_trust_remote_code_transformers_says_what_to_pass(tiny_lavida_checkpoint):
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        pipeline(TASK, model=str(tiny_lavida_checkpoint), device="cpu")
