"""The ``vad_metrics`` evaluate module folder; its plain-Python metric functions are importable from here too."""

from .frame_scores import *  # noqa: F401,F403
from .pixel_scores import *  # noqa: F401,F403
from .region_scores import *  # noqa: F401,F403
