"""What every ``reco`` command shares: the consoles, the one way to fail, the input formats, the load report."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from recommender.data.adapters import FORMATS as ADAPTERS
from recommender.data.loading import LoadReport

FORMATS: tuple[str, ...] = tuple(ADAPTERS)
"""The ``--format`` choices: one per adapter in :mod:`recommender.data.adapters`."""

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code`` (2: unusable input or configuration)."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def check_format(fmt: str) -> None:
    """Fail with one sentence unless ``fmt`` is a known input format."""
    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not '{fmt}'.")


def print_report(report: LoadReport) -> None:
    """What happened to a file's rows: read, kept, bad (with a sample naming row, field and value), excluded."""
    out.print(
        f"[bold]{report.source}[/]: {report.rows_read:,} rows read, {report.rows_kept:,} kept, "
        f"{report.rows_bad:,} bad ({report.bad_share:.2%})",
        highlight=False,
    )
    for reason, n in report.excluded.items():
        out.print(f"  excluded by format rules: {n:,} x {reason}", highlight=False)
    for reason, n in report.bad_by_reason.items():
        out.print(f"  skipped: {n:,} x {reason}", highlight=False)
    for bad in report.sample:
        out.print(f"    e.g. {bad}", highlight=False)


def require_charts(what: str) -> None:
    """Fail with one sentence when matplotlib, which only the HTML reports' charts need, is not installed (the
    service image leaves it out)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        fail(
            f"{what} draws charts with matplotlib, which is not installed here (the service image leaves it out: "
            "pip install matplotlib, or build the image with --build-arg LEAVE_OUT=)."
        )
