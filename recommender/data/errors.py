"""The one error input data raises: a clear sentence naming what is wrong and where, never a traceback."""

from __future__ import annotations


class DataError(Exception):
    """Input that cannot be used at all (missing or unreadable file, missing column, too many bad rows)."""
