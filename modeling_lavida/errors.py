"""Errors a user can meet. The CLI prints them as one line and exits with status 2."""

from __future__ import annotations


class UserInputError(ValueError):
    """A problem with something the user supplied (a video, a name list, a folder, a flag).

    The message names the input and says what to do; it is shown without a traceback.
    """


__all__ = ["UserInputError"]
