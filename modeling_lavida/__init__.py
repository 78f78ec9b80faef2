"""LAVIDA-HF: zero-shot video anomaly detection (LAVIDA) for the Hugging Face ecosystem.

``import lavida`` is cheap: it imports neither torch nor transformers, so the ``lavida`` command line starts at once.
The public classes are loaded on first use (``from lavida import LavidaConfig``, ``lavida.LavidaProcessor``, ...),
and the first such use also registers the package with transformers, once per process:

- ``LavidaConfig`` with ``AutoConfig`` and ``LavidaForVideoAnomalyDetection`` with ``AutoModel``, both marked for
  ``trust_remote_code`` export: every ``save_pretrained``/``push_to_hub`` writes the model's code files and an
  ``auto_map`` next to the weights, so the checkpoint also loads for users without the package
  (``AutoModel.from_pretrained(path, trust_remote_code=True)``);
- ``LavidaProcessor`` with ``AutoProcessor``, the same way;
- the ``video-anomaly-detection`` pipeline task.

When transformers is already imported, ``import lavida`` registers at once (it costs nothing more then), so the usual
order works as it always did::

    from transformers import pipeline
    import lavida

    detector = pipeline("video-anomaly-detection", model="path/or/hub-id", trust_remote_code=True)

A checkpoint saved by this package declares its pipeline in ``config.json`` (``custom_pipelines``), so transformers
asks for ``trust_remote_code=True`` even when the package is installed; to run the installed package's pipeline code
instead of the checkpoint's copy, pass ``pipeline_class=lavida.VideoAnomalyDetectionPipeline`` (or use
``lavida.processing.factories.load_detection_pipeline``).

Code that imports ``lavida`` first and then reaches transformers' Auto classes or ``pipeline`` without touching a
``lavida`` class calls ``lavida.register_with_transformers()`` (idempotent, no model is loaded).
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .configuration_lavida import LavidaConfig
    from .modeling_lavida import LavidaForVideoAnomalyDetection, LavidaOutput, LavidaPreTrainedModel
    from .processing.pipeline_lavida import VideoAnomalyDetectionPipeline
    from .processing.processing_lavida import LavidaProcessor

DISTRIBUTION_NAME = "lavida-hf"
# The version of a source tree that is not installed; setup.py's ``version`` (a test keeps the two equal).
SOURCE_VERSION = "0.1.0"

# public name -> submodule defining it (imported on first access)
_LAZY_ATTRIBUTES: dict[str, str] = {
    "LavidaConfig": ".configuration_lavida",
    "LavidaForVideoAnomalyDetection": ".modeling_lavida",
    "LavidaOutput": ".modeling_lavida",
    "LavidaPreTrainedModel": ".modeling_lavida",
    "LavidaProcessor": ".processing.processing_lavida",
    "VideoAnomalyDetectionPipeline": ".processing.pipeline_lavida",
}

_registration_lock = threading.RLock()
_registration_state = {"done": False, "running": False}


def package_version() -> str:
    """The installed version of the ``lavida-hf`` distribution, else ``SOURCE_VERSION`` (an uninstalled tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION_NAME)
    except PackageNotFoundError:
        return SOURCE_VERSION


def register_with_transformers() -> None:
    """Register LAVIDA's config, model, processor and pipeline task with transformers (once per process).

    Runs on the first access to a public class of the package; call it directly before using
    ``AutoConfig``/``AutoModel``/``AutoProcessor.from_pretrained`` or ``pipeline("video-anomaly-detection")`` on a
    LAVIDA checkpoint without ``trust_remote_code``. Imports torch and transformers; loads no weights.
    """
    with _registration_lock:
        if _registration_state["done"] or _registration_state["running"]:
            return
        _registration_state["running"] = True
        try:
            _register()
            _registration_state["done"] = True
        finally:
            _registration_state["running"] = False


def _register() -> None:
    from transformers import AutoConfig, AutoModel, AutoProcessor

    from .configuration_lavida import LavidaConfig
    from .modeling_lavida import LavidaForVideoAnomalyDetection

    AutoConfig.register(LavidaConfig.model_type, LavidaConfig, exist_ok=True)
    AutoModel.register(LavidaConfig, LavidaForVideoAnomalyDetection, exist_ok=True)
    LavidaConfig.register_for_auto_class()
    LavidaForVideoAnomalyDetection.register_for_auto_class("AutoModel")

    from .processing.processing_lavida import LavidaProcessor  # after the config is registered

    AutoProcessor.register(LavidaConfig, LavidaProcessor, exist_ok=True)
    LavidaProcessor.register_for_auto_class("AutoProcessor")

    from .processing.pipeline_lavida import register_pipeline

    register_pipeline()  # pipeline("video-anomaly-detection", model=...)


def __getattr__(name: str) -> Any:
    """Load a public class on first access (registering the package with transformers) or compute ``__version__``."""
    if name == "__version__":
        globals()[name] = package_version()
        return globals()[name]
    module_name = _LAZY_ATTRIBUTES.get(name)
    if module_name is None:  # an AttributeError lets ``from lavida import <submodule>`` import the submodule
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    register_with_transformers()
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_ATTRIBUTES) | {"__version__"})


__all__ = ["DISTRIBUTION_NAME", "LavidaConfig", "LavidaForVideoAnomalyDetection", "LavidaOutput",
           "LavidaPreTrainedModel", "LavidaProcessor", "SOURCE_VERSION", "__version__", "package_version",
           "register_with_transformers", "VideoAnomalyDetectionPipeline"]


if "transformers" in __import__("sys").modules:  # the heavy imports are paid already: register as before
    register_with_transformers()
