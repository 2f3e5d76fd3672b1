"""Error types whose messages name the offending file and the fix.

Tools catch :class:`WSSSError` (see :mod:`wsss.cli`), print its message and exit non-zero,
so users never see a traceback for bad input.
"""


class WSSSError(Exception):
    """Base class for user-facing errors (bad input, bad config, bad checkpoint)."""

    def __init__(self, message, path=None, fix=None):
        self.path = None if path is None else str(path)
        self.fix = fix
        parts = [message if self.path is None else f"{self.path}: {message}"]
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__("\n  ".join(parts))


class DataError(WSSSError):
    """A dataset file is missing, corrupt or inconsistent."""


class ConfigError(WSSSError):
    """A config file or command-line override is invalid."""


class CheckpointError(WSSSError):
    """A checkpoint is missing, truncated or for another architecture."""


class DownloadError(WSSSError):
    """A download failed: unreachable, refused, truncated, or not the expected file."""
