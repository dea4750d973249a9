"""Options shared by every command of the `agetune` command line."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tuner.cli import app
from tuner.data import DatasetLayout
from tuner.errors import DataError
from tuner.options import SearchOptions, check_before_tensorflow
from tuner.run import RunFolder


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


# --- Input errors before TensorFlow loads ------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]

# Runs the command line in a fresh interpreter, then prints its exit code and whether it imported TensorFlow.
RUN_AND_REPORT_IMPORTS = """
import sys
from tuner.cli import app
try:
    app(sys.argv[1:])
except SystemExit as exit:
    print(f"exit {exit.code}, tensorflow imported: {'tensorflow' in sys.modules}")
"""


def run_cli_fresh(arguments: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", RUN_AND_REPORT_IMPORTS, *arguments], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize(("problem", "expected_error"), [
    ("missing dataset", "error: Cannot use the dataset at {root}:\n  - Dataset folder not found: {root}."),
    ("bad column", "Column 'real_age' not found in labels.csv. Found columns: 'file_name', 'age'. Did you mean 'age'?"),
    ("misspelled space", "error: search space 'qiuck' not found. Did you mean 'quick'?"),
    ("missing weights file", "error: backbone weights file {root}/resnet.h5 not found."),
], ids=["missing-dataset", "bad-column", "misspelled-space", "missing-weights-file"])
def test_search_input_errors_come_before_tensorflow(problem: str, expected_error: str, tmp_path: Path,
                                                    make_faces: Callable[..., DatasetLayout]) -> None:
    root = make_faces().root
    arguments = ["search", "--data", str(root), "--run", str(tmp_path / "run")]
    if problem == "missing dataset":
        root = tmp_path / "nowhere"
        arguments[2] = str(root)
    elif problem == "bad column":
        labels = root / "labels.csv"
        labels.write_text(labels.read_text(encoding="utf-8").replace("real_age", "age", 1), encoding="utf-8")
    elif problem == "misspelled space":
        arguments += ["--space", "qiuck"]
    else:
        arguments += ["--weights", str(root / "resnet.h5")]

    finished = run_cli_fresh(arguments)

    assert finished.stdout.splitlines()[-1] == "exit 1, tensorflow imported: False"
    assert expected_error.format(root=root) in finished.stderr
    assert not (tmp_path / "run").exists()


def test_check_skips_dataset_of_resumed_run(tmp_path: Path) -> None:
    # A resumed search trains on the split in its run folder, so a dataset folder that has moved since
    # must not stop it here.
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    run.split_path.write_text("file_name,age,path,subset\n", encoding="utf-8")
    options = SearchOptions(data=tmp_path / "moved", run_dir=run.path)

    check_before_tensorflow(options)

    options.overwrite = True
    with pytest.raises(DataError, match="Dataset folder not found"):
        check_before_tensorflow(options)
