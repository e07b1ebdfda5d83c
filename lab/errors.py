"""One exception type for everything a user can get wrong.

The command line prints a LabError's message and exits 2 instead of showing a
traceback, so every message must name the file or value at fault and say what
to do about it.
"""


class LabError(Exception):
    """A problem with the user's input or environment, explained in words."""
