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


@pytest.mark.parametrize("verbose_at", ["before", "after"])
def test_verbose_before_or_after_command(verbose_at: str, make_faces: Callable[..., DatasetLayout]) -> None:
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


PROBLEMS = {
    "missing-dataset": "error: Cannot use the dataset at {root}:\n  - Dataset folder not found: {root}.",
    "bad-column": "Column 'real_age' not found in labels.csv. Found columns: 'file_name', 'age'. Did you mean 'age'?",
    "misspelled-space": "error: search space 'qiuck' not found. Did you mean 'quick'?",
    "missing-weights-file": "error: backbone weights file {root}/resnet.h5 not found.",
    "text-weights-file": "error: backbone weights file {root}/labels.csv is not an HDF5 (.h5) file.",
    "bad-switch": "error: --mixed-precision must be auto, on or off, got 'yes'.",
    "misspelled-tuner": "error: --tuner: value 'hyperbnd' must be one of 'hyperband', 'random', 'bayesian'.",
    "run-is-a-file": "error: --run {run} is a file, not a folder.",
    "foreign-run-folder": "error: {run} exists and is not an agetune run folder",
}


@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_search_errors_before_tensorflow(problem: str, tmp_path: Path,
                                                    make_faces: Callable[..., DatasetLayout]) -> None:
    root = make_faces().root
    run = tmp_path / "run"
    arguments = ["search", "--data", str(root), "--run", str(run)]
    if problem == "missing-dataset":
        root = tmp_path / "nowhere"
        arguments[2] = str(root)
    elif problem == "bad-column":
        labels = root / "labels.csv"
        labels.write_text(labels.read_text(encoding="utf-8").replace("real_age", "age", 1), encoding="utf-8")
    elif problem == "misspelled-space":
        arguments += ["--space", "qiuck"]
    elif problem == "missing-weights-file":
        arguments += ["--weights", str(root / "resnet.h5")]
    elif problem == "text-weights-file":
        arguments += ["--weights", str(root / "labels.csv")]
    elif problem == "bad-switch":
        arguments += ["--mixed-precision", "yes"]
    elif problem == "misspelled-tuner":
        arguments += ["--tuner", "hyperbnd"]
    elif problem == "run-is-a-file":
        run.write_text("not a folder", encoding="utf-8")
    else:
        run.mkdir()
        # A config.json that agetune did not write: it must be neither replaced nor trained over.
        (run / "config.json").write_text('{"owner": "someone else"}', encoding="utf-8")
    before = sorted(path.name for path in run.iterdir()) if run.is_dir() else None

    finished = run_cli_fresh(arguments)

    assert finished.stdout.splitlines()[-1] == "exit 1, tensorflow imported: False"
    assert PROBLEMS[problem].format(root=root, run=run) in finished.stderr
    if problem == "run-is-a-file":
        assert run.read_text(encoding="utf-8") == "not a folder"
    elif problem == "foreign-run-folder":
        assert sorted(path.name for path in run.iterdir()) == before
        assert (run / "config.json").read_text(encoding="utf-8") == '{"owner": "someone else"}'
    else:
        assert not run.exists()


def test_search_error_lists_row_warnings(tmp_path: Path, make_faces: Callable[..., DatasetLayout]) -> None:
    root = make_faces(ages=["old", "young"]).root

    finished = run_cli_fresh(["search", "--data", str(root), "--run", str(tmp_path / "run")])

    assert finished.stdout.splitlines()[-1] == "exit 1, tensorflow imported: False"
    assert "labels.csv line 2 (000000.jpg): age 'old' is not a number" in finished.stderr
    assert "labels.csv line 3 (000001.jpg): age 'young' is not a number" in finished.stderr
    assert "Fix the rows named in the warnings." in finished.stderr
