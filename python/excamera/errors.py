"""Errors shared across excamera's commands."""


class CommandError(Exception):
    """A failure to report as one line on stderr with a non-zero exit, never a traceback."""
