"""Errors a user can meet (a video, a name list, a folder, a flag). The CLI prints them as one line, exit status 2.

This file is copied next to saved checkpoints with the pipeline, so it imports nothing.
"""

from __future__ import annotations


class UserInputError(ValueError):
    """A problem with something the user supplied (a video, a name list, a folder, a flag).

    The message names the input and says what to do; it is shown without a traceback.
    """


__all__ = ["UserInputError"]
