"""Errors that end a command with one clear line (exit 2), never a traceback."""


class ConvfixError(Exception):
    """Bad input or usage: the message is shown to the user as one line."""
