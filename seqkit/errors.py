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


# Longest repr of a user-supplied value that an error message echoes: a hostile recipe or request
# can hold megabytes in one field, and the message must stay one readable line.
MAX_ECHO = 60


def shorten(value: object, limit: int = MAX_ECHO) -> str:
    """``repr(value)`` cut to ``limit`` characters (``...`` plus the full length when cut).

    Containers are not repr'd whole (that alone can cost gigabytes for a shared-reference bomb):
    only their type and length are shown.
    """
    if isinstance(value, (dict, list, tuple, set)):
        return f"<{type(value).__name__} of {len(value)}>"
    text = value[: limit + 1] if isinstance(value, str) else value
    try:
        shown = repr(text)
    except Exception:  # noqa: BLE001 - a repr that fails (huge int, odd object) still gets named
        return f"<{type(value).__name__}>"
    if len(shown) <= limit and not (isinstance(value, str) and len(value) > limit):
        return shown
    full = len(value) if isinstance(value, str) else len(shown)
    return f"{shown[: limit - 3]}... ({full} characters)"
