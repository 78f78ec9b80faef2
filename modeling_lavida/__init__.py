"""LAVIDA-HF: zero-shot video anomaly detection (LAVIDA) for the Hugging Face ecosystem.

Importing the package registers ``LavidaConfig`` with ``AutoConfig`` and ``LavidaForVideoAnomalyDetection`` with
``AutoModel``, and marks both for ``trust_remote_code`` export: every ``save_pretrained``/``push_to_hub`` writes the
model's code files and an ``auto_map`` next to the weights, so the checkpoint also loads for users without the
package (``AutoModel.from_pretrained(path, trust_remote_code=True)``). ``LavidaProcessor`` is registered with
``AutoProcessor`` the same way, and the ``video-anomaly-detection`` pipeline task is registered.
"""

from transformers import AutoConfig, AutoModel, AutoProcessor

from .configuration_lavida import LavidaConfig
from .modeling_lavida import LavidaForVideoAnomalyDetection, LavidaOutput, LavidaPreTrainedModel

__version__ = "0.1.0"

AutoConfig.register(LavidaConfig.model_type, LavidaConfig, exist_ok=True)
AutoModel.register(LavidaConfig, LavidaForVideoAnomalyDetection, exist_ok=True)
LavidaConfig.register_for_auto_class()
LavidaForVideoAnomalyDetection.register_for_auto_class("AutoModel")

from .processing.processing_lavida import LavidaProcessor  # noqa: E402  (needs the config registered first)

AutoProcessor.register(LavidaConfig, LavidaProcessor, exist_ok=True)
LavidaProcessor.register_for_auto_class("AutoProcessor")

from .processing.pipeline_lavida import register_pipeline  # noqa: E402

register_pipeline()  # pipeline("video-anomaly-detection", model=...)

__all__ = ["LavidaConfig", "LavidaForVideoAnomalyDetection", "LavidaOutput", "LavidaPreTrainedModel", "LavidaProcessor",
           "__version__"]
