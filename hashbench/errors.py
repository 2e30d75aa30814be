"""Exceptions that the CLI turns into one-line messages with exit code 2."""

from __future__ import annotations


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
