"""Options shared by every command of the `agetune` command line."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from tuner.cli import app
from tuner.data import DatasetLayout


@pytest.mark.parametrize("verbose_at", ["before", "after"])
def test_verbose_before_or_after_the_command(verbose_at: str, make_faces: Callable[..., DatasetLayout]) -> None:
    root = str(make_faces().root)
    arguments = ["-v", "data", root] if verbose_at == "before" else ["data", root, "--verbose"]

    result = CliRunner().invoke(app, arguments)

    assert result.exit_code == 0, result.output
    assert logging.getLogger("tuner").level == logging.DEBUG


def test_without_verbose_logs_info(make_faces: Callable[..., DatasetLayout]) -> None:
    result = CliRunner().invoke(app, ["data", str(make_faces().root)])

    assert result.exit_code == 0, result.output
    assert logging.getLogger("tuner").level == logging.INFO


@pytest.mark.parametrize("command", ["search", "data", "report", "export-best", "predict"])
def test_every_command_takes_verbose(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])

    assert result.exit_code == 0
    assert "--verbose" in result.output
