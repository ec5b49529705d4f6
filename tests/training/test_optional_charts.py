"""The service image leaves matplotlib out: the commands that draw charts then stop with one sentence."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from training.cli import app


@pytest.mark.parametrize(
    "args",
    [
        ["report", "--events", "events.csv", "--out", "r.html"],
        ["evaluate", "--events", "events.csv", "--format", "generic", "--html", "q.html"],
    ],
    ids=["report", "evaluate-html"],
)
def test_chart_commands_without_matplotlib_fail_in_one_sentence(
    args: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "matplotlib" in lines[0], result.output
    assert not list(tmp_path.iterdir())
