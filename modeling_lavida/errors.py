"""Errors a user can meet. The CLI prints them as one line and exits with status 2.

``UserInputError`` is defined in ``lavida.processing.errors`` (a file saved with checkpoints, so the pipeline raises
the same class without the package) and re-exported here.
"""

from __future__ import annotations

from .processing.errors import UserInputError

__all__ = ["UserInputError"]
