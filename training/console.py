"""What every ``reco`` command shares: the error console, the one way to fail, and the input formats."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from recommender.data.adapters import FORMATS as ADAPTERS

FORMATS: tuple[str, ...] = tuple(ADAPTERS)
"""The ``--format`` choices: one per adapter in :mod:`recommender.data.adapters`."""

err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code`` (2: unusable input or configuration)."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def check_format(fmt: str) -> None:
    """Fail with one sentence unless ``fmt`` is a known input format."""
    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not '{fmt}'.")
