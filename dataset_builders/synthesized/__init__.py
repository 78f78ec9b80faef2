"""Synthesised pseudo-anomalies: objects copy-pasted or diffusion-inpainted into normal videos.

Goes beyond the paper, whose authors list synthetic anomalies as future work. The result is one more source of the
Anomaly Exposure Sampler (``SynthesizedSource``, source name ``synthesized``), so corpora built from it have the same
schema as every other source.

| module | what |
|---|---|
| ``normal_clips.py`` | normal videos (files or frame folders) cut into clips |
| ``objects.py`` | object banks: cut-outs from a segmentation source, synthetic shapes, or names |
| ``trajectories.py`` | smooth random paths (cubic Bezier) with a gradual scale change |
| ``blending.py`` | resizing, feathered edges, carrying a cut-out along a path; the mask is the pasted region |
| ``copy_paste.py`` | copy-paste synthesis |
| ``inpaint.py`` | diffusers inpainting once on a key frame, then carried across the clip |
| ``source.py`` | ``SynthesizedSource``, ``build_synthesized_source``, the CLI options |
| ``preview.py`` | the comparison PNG of ``lavida synthesize-preview`` |
"""

from .copy_paste import PasteConfig, copy_paste
from .inpaint import DEFAULT_INPAINT_MODEL, InpaintConfig, Inpainter, inpaint, load_inpaint_pipeline
from .source import (
    METHODS,
    SynthesisConfig,
    SynthesisResult,
    SynthesizedSource,
    add_synthesized_arguments,
    build_synthesized_source,
    load_synthesis_config,
    synthesized_source_from_args,
)
from .trajectories import Trajectory, TrajectoryConfig, random_trajectory

__all__ = [
    "DEFAULT_INPAINT_MODEL",
    "METHODS",
    "InpaintConfig",
    "Inpainter",
    "PasteConfig",
    "SynthesisConfig",
    "SynthesisResult",
    "SynthesizedSource",
    "Trajectory",
    "TrajectoryConfig",
    "add_synthesized_arguments",
    "build_synthesized_source",
    "copy_paste",
    "inpaint",
    "load_inpaint_pipeline",
    "load_synthesis_config",
    "random_trajectory",
    "synthesized_source_from_args",
]
