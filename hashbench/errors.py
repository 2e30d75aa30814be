"""Exceptions that the CLI turns into one-line messages with exit code 2, and how their messages
quote user input."""

from __future__ import annotations

#: the longest quote of user input in an error message, ellipsis included
EXCERPT_CHARS = 60


class HashbenchError(Exception):
    """Base class for every error hashbench raises on purpose."""


class UserError(HashbenchError):
    """Bad input from the user: a config value, a name, a file. Exit code 2."""


class ConfigError(UserError):
    """An invalid configuration value; the message names the file, the key and the allowed values."""


class PluginError(UserError):
    """A plugin that is unknown, fails to import, or violates its contract."""


class DataError(UserError):
    """A dataset file that is missing or malformed; the message names the file and line."""


class ArtifactError(HashbenchError):
    """A stored artifact that cannot be trusted (checksum mismatch, unknown format)."""


def shorten(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` cut to ``limit`` characters, the last one an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters: how an error message quotes user input."""
    try:
        text = repr(value)
    except RecursionError:  # only a structure built outside this loader can be this deep
        text = f"<{type(value).__name__} nested too deeply>"
    return shorten(text, limit)
