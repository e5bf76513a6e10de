"""seqkit's own error types. Every user-facing failure is one of these, never a deep traceback."""

from __future__ import annotations


class SeqkitError(Exception):
    """Base class: the CLI prints ``error: <message>`` and exits with status 1."""


class RecipeError(SeqkitError):
    """A recipe that does not load or validate; the message names the file and dotted key path."""


class PluginError(SeqkitError):
    """A plugin that is unknown, fails to import, violates its contract or is claimed twice."""


class DataError(SeqkitError):
    """A corpus that cannot be read: missing file, misaligned pair, bad encoding; names file and line."""


class CheckpointError(SeqkitError):
    """A run directory or checkpoint that is missing, incomplete or inconsistent."""


class ModelError(SeqkitError):
    """An exported model directory that is missing files or fails its manifest check."""


class InputError(SeqkitError):
    """Runtime input (text to translate or a prompt) that cannot be processed."""
